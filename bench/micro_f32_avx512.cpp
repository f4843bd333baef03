// The AVX-512 float32 product of the CPU kernel (kernel_simd.hpp's gemm,
// the 6 x 64 register block) timed alone, beside a loop of independent
// FMAs that gives the core's peak; compiled with the kernel's AVX-512 flags
// (bench/CMakeLists.txt), called only where the CPU has AVX-512F.
// (The whole kernel is included for its constants, so that the operands
// have the kernel's strides; its entry point goes unused here.)
#define LONGATTN_KERNEL_NS micro_f32_impl
#define LONGATTN_KERNEL_ENTRY run_rect
#include <algorithm>
#include <chrono>
#include <vector>

#include "bench/micro_f32.hpp"
#include "cpu/kernel_impl.hpp"

namespace longattn::bench {
namespace {

double seconds_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// 24 independent FMA chains (more than the FMA latency times the units)
// on zeros, in assembly: written in C++ as an array of vectors, GCC kept
// one of them in memory inside the loop.
#define LA_ZERO(r) "vpxord %%zmm" #r ", %%zmm" #r ", %%zmm" #r "\n\t"
#define LA_FMA(r) "vfmadd231ps %%zmm30, %%zmm31, %%zmm" #r "\n\t"
#define LA_EACH8(M, a, b, c, d, e, f, g, h) M(a) M(b) M(c) M(d) M(e) M(f) M(g) M(h)
#define LA_ALL24(M)                   \
  LA_EACH8(M, 0, 1, 2, 3, 4, 5, 6, 7) \
  LA_EACH8(M, 8, 9, 10, 11, 12, 13, 14, 15) LA_EACH8(M, 16, 17, 18, 19, 20, 21, 22, 23)
[[gnu::noinline]] void fma_chains(long iters) {
  asm volatile(LA_ALL24(LA_ZERO) LA_ZERO(30) LA_ZERO(31)  //
               "1:\n\t" LA_ALL24(LA_FMA)                  //
               "dec %0\n\t"
               "jnz 1b\n\t"
               : "+r"(iters)
               :
               : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
                 "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18",
                 "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm30", "xmm31", "cc");
}
#undef LA_ALL24
#undef LA_EACH8
#undef LA_FMA
#undef LA_ZERO

// Best GFLOP/s of `reps` timings of `inner` calls of f, each 2 M N K flops.
template <class F>
double best_rate(double flops, int reps, int inner, F f) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const double t0 = seconds_now();
    for (int i = 0; i < inner; ++i) f();
    best = std::min(best, (seconds_now() - t0) / inner);
  }
  return flops / best * 1e-9;
}

}  // namespace

MicroF32 measure_micro_f32_avx512(int rows, int head_dim) {
  using namespace longattn::cpu::micro_f32_impl;
  MicroF32 r;
  r.keys = kKeys;
  // Best of five, the first also bringing the core to its clock.
  const long iters = 10'000'000;
  for (int rep = 0; rep < 5; ++rep) {
    const double t0 = seconds_now();
    fma_chains(iters);
    r.peak =
        std::max(r.peak, 24.0 * 32.0 * static_cast<double>(iters) / (seconds_now() - t0) * 1e-9);
  }
  // The kernel's operands for one key tile of an item: Q rows (rows x D),
  // K^T packed (D x kKeys, row stride kKtStride), S (rows x kKeys); P V:
  // S (rows x kKeys) times V packed (kKeys x D, row stride v_stride(D))
  // into O (rows x D).
  const int D = head_dim, dvp = round_up(D, 16);
  std::vector<float> q(static_cast<std::size_t>(rows) * D, 0.01f);
  std::vector<float> kt(static_cast<std::size_t>(D) * kKtStride, 0.02f);
  std::vector<float> sc(static_cast<std::size_t>(rows) * kKeys, 0.f);
  std::vector<float> v(static_cast<std::size_t>(kKeys) * v_stride(dvp), 0.03f);
  std::vector<float> o(static_cast<std::size_t>(rows) * dvp, 0.f);
  // FLOPs the product executes, against the FMA peak: P V runs over the
  // padded columns too (dvp, D rounded up to 16).
  r.qk = best_rate(2.0 * rows * kKeys * D, 7, 200, [&] {
    gemm<false>(rows, kKeys, D, q.data(), D, kt.data(), kKtStride, sc.data(), kKeys);
  });
  r.pv = best_rate(2.0 * rows * kKeys * dvp, 7, 200, [&] {
    gemm<true>(rows, dvp, kKeys, sc.data(), kKeys, v.data(), v_stride(dvp), o.data(), dvp);
  });
  return r;
}

}  // namespace longattn::bench
