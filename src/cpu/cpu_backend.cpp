// The CPU backend: dispatches run synchronously on OpenMP threads; a
// submission's measured time is its wall time.
#include <array>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>
#include <thread>

#if defined(LONGATTN_HAVE_AVX2_KERNEL)
#include <cpuid.h>
#endif

#include "core/backend.hpp"
#include "core/mask_blocks.hpp"
#include "cpu/amx_support.hpp"
#include "cpu/kernel.hpp"

namespace longattn::core {
namespace {

bool have_avx2() {
#if defined(LONGATTN_HAVE_AVX2_KERNEL)
  // F16C through cpuid (leaf 1, ECX bit 29): clang has no "f16c" name for
  // __builtin_cpu_supports.
  unsigned a = 0, b = 0, c = 0, d = 0;
  const bool f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29)) != 0;
  __builtin_cpu_init();
  return f16c && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

bool have_avx512() {
#if defined(LONGATTN_HAVE_AVX512_KERNEL)
  // libgcc's feature bits include the OS check (XCR0 enables the ZMM state).
  return have_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#else
  return false;
#endif
}

bool have_avx512bf16() {
#if defined(LONGATTN_HAVE_AVX512_KERNEL)
  return have_avx512() && __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}

// AMX (the AVX512-BF16 build with tile products): the CPU, the OS and
// Linux's permission, probed once (amx_support.cpp). Empty when usable,
// else why not.
std::string why_no_amx() {
  if (!have_avx512bf16()) return "this CPU or build has no AVX-512 with AVX512-BF16";
  return cpu::amx_support().why_not;
}

enum class Path { generic, avx2, avx512, avx512bf16, amx };

// The kernel path: the best this CPU has, or the one LONGATTN_CPU_KERNEL
// names ("generic", "avx2", "avx512", "avx512bf16" or "amx"; "auto" or
// unset = best), read per backend (per call) so that tests and A/B runs can
// switch within one process. Where AMX is refused (see amx_support.hpp),
// auto takes the next path.
Path choose_path() {
  const char* env = std::getenv("LONGATTN_CPU_KERNEL");
  const std::string want = env ? env : "auto";
  // A build with the scalar AMX model (LONGATTN_AMX_EMULATE, for testing)
  // runs it only where asked for by name: auto must never pick a model.
#if defined(LONGATTN_AMX_EMULATE)
  constexpr bool kAutoAmx = false;
#else
  constexpr bool kAutoAmx = true;
#endif
  if (want == "auto" || want.empty())
    return kAutoAmx && why_no_amx().empty() ? Path::amx
           : have_avx512bf16()              ? Path::avx512bf16
           : have_avx512()                  ? Path::avx512
           : have_avx2()                    ? Path::avx2
                                            : Path::generic;
  if (want == "generic") return Path::generic;
  if (want == "avx2") {
    if (!have_avx2())
      throw Unsupported(
          "[longattn::cpu] LONGATTN_CPU_KERNEL = avx2 but this CPU or build has no AVX2 + FMA + "
          "F16C kernel");
    return Path::avx2;
  }
  if (want == "avx512") {
    if (!have_avx512())
      throw Unsupported(
          "[longattn::cpu] LONGATTN_CPU_KERNEL = avx512 but this CPU or build has no AVX-512 "
          "(F, BW, DQ, VL) kernel");
    return Path::avx512;
  }
  if (want == "avx512bf16") {
    if (!have_avx512bf16())
      throw Unsupported(
          "[longattn::cpu] LONGATTN_CPU_KERNEL = avx512bf16 but this CPU or build has no AVX-512 "
          "kernel with AVX512-BF16");
    return Path::avx512bf16;
  }
  if (want == "amx") {
    if (const std::string why = why_no_amx(); !why.empty())
      throw Unsupported(
          "[longattn::cpu] LONGATTN_CPU_KERNEL = amx but the AMX kernel cannot run: " + why);
    return Path::amx;
  }
  throw InvalidArgument("[longattn::cpu] LONGATTN_CPU_KERNEL = \"" + want +
                        "\" is not one of auto, generic, avx2, avx512, avx512bf16, amx");
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const BackendConfig& cfg)
      : threads_(cfg.threads > 0
                     ? cfg.threads
                     : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))),
        path_(choose_path()) {}

  std::string name() const override { return "cpu"; }
  std::string device_name() const override {
    const char* kernel = path_ == Path::amx          ? "AMX-BF16"
                         : path_ == Path::avx512bf16 ? "AVX-512 + BF16"
                         : path_ == Path::avx512     ? "AVX-512"
                         : path_ == Path::avx2       ? "AVX2"
                                                     : "portable";
    return std::string("CPU (") + std::to_string(threads_) + " threads, " + kernel + " kernel)";
  }

  StateView alloc_state(const Problem& p, std::int64_t rows) override {
    const std::int64_t heads = p.B * p.Hq * rows;
    try {
      m_.assign(static_cast<std::size_t>(heads), 0.f);
      l_.assign(static_cast<std::size_t>(heads), 0.f);
      o_.assign(static_cast<std::size_t>(heads * p.Dv), 0.f);
    } catch (const std::bad_alloc&) {
      throw OutOfMemory("[longattn::attention] running state of " +
                        std::to_string(heads * (p.Dv + 2) * 4) +
                        " bytes could not be allocated on the host");
    }
    return {m_.data(), l_.data(), o_.data(), 0, rows};
  }
  void release_state(StateView& s) noexcept override {
    m_ = {};
    l_ = {};
    o_ = {};
    s = {};
  }

  void summarize_mask(Problem& p) override {
    blocks_ = core::summarize_mask_host(p);
    cost_ = core::mask_cost(p, blocks_);
    core::attach_blocks(p, blocks_.data());
    p.mask_cost = &cost_;
  }

  void begin_submission() override { t0_ = std::chrono::steady_clock::now(); }
  const char* dispatch(const Problem& p, const Dispatch& d, const StateView& state) override {
    switch (path_) {
      case Path::amx:
        // Tiles serve bfloat16 inputs; others take the paths below.
        if (p.dtype == DType::bfloat16) {
          cpu::run_rect_amx(p, d.rect, d.mode, state, threads_, scratch_[int(Path::amx)]);
          return "cpu.amx";
        }
        [[fallthrough]];
      case Path::avx512bf16:
        // Its bfloat16 products serve bfloat16 inputs; others take the
        // AVX-512 build (the same code without them).
        if (p.dtype == DType::bfloat16) {
          cpu::run_rect_avx512bf16(p, d.rect, d.mode, state, threads_,
                                   scratch_[int(Path::avx512bf16)]);
          return "cpu.avx512bf16";
        }
        [[fallthrough]];
      case Path::avx512:
        cpu::run_rect_avx512(p, d.rect, d.mode, state, threads_, scratch_[int(Path::avx512)]);
        return "cpu.avx512";
      case Path::avx2:
        cpu::run_rect_avx2(p, d.rect, d.mode, state, threads_, scratch_[int(Path::avx2)]);
        return "cpu.avx2";
      case Path::generic:
        break;
    }
    cpu::run_rect_generic(p, d.rect, d.mode, state, threads_, scratch_[int(Path::generic)]);
    return "cpu.generic";
  }
  std::optional<double> end_submission() override {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0_)
        .count();
  }
  std::vector<double> finish() override { return {}; }

 private:
  int threads_;
  Path path_;
  std::vector<float> m_, l_, o_;
  // Each kernel build's per-thread scratch, kept for this backend's (the
  // call's) dispatches (cpu/kernel.hpp).
  std::array<std::shared_ptr<void>, int(Path::amx) + 1> scratch_;
  std::vector<std::uint8_t> blocks_;  // the mask's summary (summarize_mask)
  core::MaskCost cost_;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const BackendConfig& cfg) {
  return std::make_unique<CpuBackend>(cfg);
}

}  // namespace longattn::core
