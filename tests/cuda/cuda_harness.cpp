#include "cuda_harness.hpp"

#include <cuda_runtime.h>

#include <map>
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

void run_cuda(CaseData& d, longattn::AttentionOptions base) {
  std::map<const Buffer*, void*> dev;
  auto release = [&] {
    for (auto& [b, p] : dev) (void)cudaFree(p);
  };
  try {
    for (Buffer* b : d.buffers()) {
      void* p = nullptr;
      check(cudaMalloc(&p, b->bytes.size()), "cudaMalloc");
      dev[b] = p;
      check(cudaMemcpy(p, b->bytes.data(), b->bytes.size(), cudaMemcpyHostToDevice), "upload");
    }
    const Tensors t =
        d.views_at([&](const Buffer& b) { return dev.at(&b); }, longattn::Device::cuda);
    base.backend = longattn::BackendKind::cuda;
    longattn::attention(t.q, t.k, t.v, t.out, d.options(t, base));
    check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    for (Buffer* b : {&d.out, &d.lse})
      if (b->present())
        check(cudaMemcpy(b->bytes.data(), dev.at(b), b->bytes.size(), cudaMemcpyDeviceToHost),
              "download");
  } catch (...) {
    release();
    throw;
  }
  release();
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
  return metric(d.out.read(), want).err;
}

std::vector<std::int64_t> built_head_dims() { return longattn::core::cuda_head_dims(); }

}  // namespace lt::gpu
