// Dynamic shared memory above 48 KB needs cudaFuncSetAttribute, per kernel
// and per device; allow_dynamic_smem does it once for each (devices 0..63).
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

#include "cuda/check.hpp"

namespace longattn::cuda {

template <auto Kernel>
void allow_dynamic_smem(int bytes, const char* what) {
  static std::atomic<std::uint64_t> done{0};
  int dev = 0;
  check_cuda(cudaGetDevice(&dev), "cudaGetDevice");
  const std::uint64_t bit = std::uint64_t{1} << (dev & 63);
  if (done.load(std::memory_order_acquire) & bit) return;
  check_cuda(cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes),
             what);
  done.fetch_or(bit, std::memory_order_acq_rel);
}

}  // namespace longattn::cuda
