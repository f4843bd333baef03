#include "cuda_harness.hpp"

#include <cuda_runtime.h>

#include <algorithm>
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
  longattn::RunReport report;
  base.report = &report;
  check_cuda(c, base);
  std::vector<std::string> all;
  for (const auto& s : report.submissions)
    for (const auto& k : s.kernels)
      if (std::find(all.begin(), all.end(), k) == all.end()) all.push_back(k);
  return all;
}

}  // namespace lt::gpu
