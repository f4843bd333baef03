// CUDA error checks: every failing CUDA call becomes a BackendError (or
// OutOfMemory for allocations) whose message names the call.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "longattn/error.hpp"

namespace longattn::cuda {

inline void check_cuda(cudaError_t e, const char* call) {
  if (e == cudaSuccess) return;
  const std::string msg = std::string("[longattn::cuda] ") + call +
                          " failed: " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
  if (e == cudaErrorMemoryAllocation) throw OutOfMemory(msg);
  throw BackendError(msg);
}

}  // namespace longattn::cuda
