#include "cuda_harness.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <sstream>
#include <stdexcept>

#include "core/backend.hpp"

namespace lt::gpu {
namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("test harness: ") + what + ": " + cudaGetErrorString(e));
}

}  // namespace

std::string why_no_device() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return std::string("cudaGetDeviceCount: ") + cudaGetErrorName(e);
  }
  if (n == 0) return "cudaGetDeviceCount: 0 devices";
  if (!longattn::core::cuda_available()) return "longattn::core::cuda_available() is false";
  return {};
}

DeviceCase::DeviceCase(CaseData& d) : d_(d) {
  try {
    for (Buffer* b : d.buffers()) {
      void* p = nullptr;
      check(cudaMalloc(&p, b->bytes.size()), "cudaMalloc");
      dev_.emplace_back(b, p);
      check(cudaMemcpy(p, b->bytes.data(), b->bytes.size(), cudaMemcpyHostToDevice), "upload");
    }
  } catch (...) {
    for (auto& [b, p] : dev_) (void)cudaFree(p);
    throw;
  }
  views_ = d.views_at(
      [&](const Buffer& b) {
        for (auto& [hb, p] : dev_)
          if (hb == &b) return p;
        throw std::runtime_error("test harness: buffer without a device copy");
      },
      longattn::Device::cuda);
}

DeviceCase::~DeviceCase() {
  for (auto& [b, p] : dev_) (void)cudaFree(p);
}

void DeviceCase::attention(longattn::AttentionOptions base) const {
  base.backend = longattn::BackendKind::cuda;
  longattn::attention(views_.q, views_.k, views_.v, views_.out, d_.options(views_, base));
}

void DeviceCase::reset_outputs() {
  d_.reset_outputs();
  for (auto& [b, p] : dev_)
    if (b == &d_.out || b == &d_.lse)
      check(cudaMemcpy(p, b->bytes.data(), b->bytes.size(), cudaMemcpyHostToDevice), "upload");
}

void DeviceCase::download() {
  for (auto& [b, p] : dev_)
    if (b == &d_.out || b == &d_.lse)
      check(cudaMemcpy(b->bytes.data(), p, b->bytes.size(), cudaMemcpyDeviceToHost), "download");
}

void run_cuda(CaseData& d, longattn::AttentionOptions base) {
  DeviceCase dc(d);
  dc.attention(base);
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  dc.download();
}

Comparison check_cuda(const Case& c, const longattn::AttentionOptions& base) {
  CaseData d(c);
  run_cuda(d, base);
  Comparison r = compare(d);
  EXPECT_TRUE(r.ok) << r.message;
  return r;
}

double cuda_vs_cpu(const Case& c, const longattn::AttentionOptions& base) {
  CaseData d(c);
  longattn::AttentionOptions cpu = base;
  cpu.backend = longattn::BackendKind::cpu;
  run(d, cpu);
  const std::vector<double> want = d.out.read();
  d.reset_outputs();
  run_cuda(d, base);
  return metric(d.out.read(), want, c.dv()).err;
}

std::vector<std::int64_t> built_head_dims() { return longattn::core::cuda_head_dims(); }

bool is_hopper() {
  int dev = 0, major = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev),
        "cudaDeviceGetAttribute");
  return major == 9;
}

std::vector<std::string> check_cuda_kernels(const Case& c, longattn::AttentionOptions base) {
  CaseData d(c);
  std::vector<std::string> kernels = run_cuda_kernels(d, base);
  const Comparison r = compare(d);
  EXPECT_TRUE(r.ok) << r.message;
  return kernels;
}

std::vector<std::string> run_cuda_kernels(CaseData& d, longattn::AttentionOptions base) {
  longattn::RunReport report;
  base.report = &report;
  run_cuda(d, base);
  std::vector<std::string> all;
  for (const auto& s : report.submissions)
    for (const auto& k : s.kernels)
      if (std::find(all.begin(), all.end(), k) == all.end()) all.push_back(k);
  return all;
}

Comparison compare_sampled(CaseData& d, const std::vector<std::int64_t>& rows) {
  const Case& c = d.c;
  const std::int64_t Dv = c.dv();
  // Multiply-adds of the whole reference; 3e7 is about 0.1 s of it.
  const double work = static_cast<double>(c.B * c.Hq) * static_cast<double>(c.Lq) *
                      static_cast<double>(c.Lk) * static_cast<double>(c.D + Dv);
  if (work <= 3e7) return compare(d);

  std::vector<std::int64_t> sample = rows;
  sample.insert(sample.end(), {0, 63, 64, 127, 128, c.Lq - 2, c.Lq - 1});
  for (std::int64_t n = 1; n < 4; ++n) sample.push_back(c.Lq * n / 4 + 2 * n + 1);  // off the grid
  std::erase_if(sample, [&](std::int64_t i) { return i < 0 || i >= c.Lq; });
  std::sort(sample.begin(), sample.end());
  sample.erase(std::unique(sample.begin(), sample.end()), sample.end());

  const std::vector<double> all_o = d.out.read();
  const std::vector<double> all_lse = d.lse.present() ? d.lse.read() : std::vector<double>{};
  std::vector<double> got_o, want_o, got_lse, want_lse;
  std::vector<double> o(static_cast<std::size_t>(Dv));
  for (std::int64_t b = 0; b < c.B; ++b)
    for (std::int64_t h = 0; h < c.Hq; ++h)
      for (std::int64_t i : sample) {
        double lse = 0;
        ref::attention_row(d.in, b, h, i, o.data(), &lse);
        const auto r = static_cast<std::size_t>((b * c.Hq + h) * c.Lq + i);
        got_o.insert(got_o.end(), all_o.begin() + static_cast<std::ptrdiff_t>(r * Dv),
                     all_o.begin() + static_cast<std::ptrdiff_t>((r + 1) * Dv));
        want_o.insert(want_o.end(), o.begin(), o.end());
        if (d.lse.present()) {
          got_lse.push_back(all_lse[r]);
          want_lse.push_back(lse);
        }
      }

  Comparison r;
  r.tol = tolerance(c.dtype, c.Lk);
  r.o = metric(got_o, want_o, Dv);
  r.guard_damage = d.out.guard_damage();
  if (d.lse.present()) {
    r.lse = lse_metric(got_lse, want_lse);
    r.guard_damage += d.lse.guard_damage();
  }
  r.ok = r.o.err <= r.tol && r.lse.err <= lse_tolerance() && r.guard_damage == 0;
  // The worst entry, as (b, h, row) of the case rather than an index into
  // the sample.
  auto where = [&](std::int64_t k) {
    const auto n = static_cast<std::int64_t>(sample.size());
    return " [b " + std::to_string(k / (c.Hq * n)) + ", h " + std::to_string(k / n % c.Hq) +
           ", row " + std::to_string(sample[static_cast<std::size_t>(k % n)]) + "]";
  };
  std::ostringstream s;
  s << c.name() << ": rows";
  for (std::int64_t i : sample) s << ' ' << i;
  s << " of " << c.Lq << "; tol " << r.tol << "; O " << r.o.describe_worst(got_o, want_o);
  if (r.o.worst >= 0) s << where(r.o.worst / Dv);
  if (d.lse.present()) {
    s << "; LSE (tol " << lse_tolerance() << ") " << r.lse.describe_worst(got_lse, want_lse);
    if (r.lse.worst >= 0) s << where(r.lse.worst);
  }
  if (r.guard_damage) s << "; " << r.guard_damage << " elements written outside the output views";
  r.message = s.str();
  return r;
}

void KernelChoiceTest::SetUp() {
  CudaTest::SetUp();
  if (IsSkipped()) return;
  setenv("LONGATTN_CUDA_PREFILL", std::string(GetParam()) == "mma" ? "mma" : "auto", 1);
}

void KernelChoiceTest::TearDown() { unsetenv("LONGATTN_CUDA_PREFILL"); }

bool KernelChoiceTest::wgmma() const { return std::string(GetParam()) == "auto" && is_hopper(); }

std::string KernelChoiceTest::expected_kernel(const Case& c) const {
  if (c.dtype == longattn::DType::float32) return "cuda.vector";
  const std::int64_t group = c.Hq / c.Hkv, packed = c.Lq * group;
  bool hopper_width = false;
  for (std::int64_t w : built_head_dims())
    hopper_width |= (w == 64 || w == 128 || w == 256) && w >= std::max(c.D, c.dv());
  const bool whole_rows =
      c.D % 8 == 0 && c.dv() % 8 == 0 && !c.misaligned && c.layout != Layout::cache_slice;
  const bool hopper = wgmma() && hopper_width && whole_rows;
  if (hopper && packed <= 64 && group <= 64 && (group & (group - 1)) == 0)
    return "cuda.wgmma.packed";
  if (packed <= 8) return "cuda.vector";
  return hopper ? "cuda.wgmma" : "cuda.mma";
}

std::string kernel_choice_name(const ::testing::TestParamInfo<const char*>& info) {
  return info.param;
}

}  // namespace lt::gpu
