// The CUDA device a call runs on. The CUDA backend runs on the calling
// thread's current device (cudaGetDevice), so the module makes the arrays'
// device current for the call and restores the previous one afterwards
// (views.hpp's ArraySet holds the scope).
// device_cuda.cpp in a build with the CUDA backend, device_stub.cpp without
// (there every CUDA array is refused by the library itself).
#pragma once

#include <cstdint>

namespace longattn::py {

class CudaDeviceScope {
 public:
  // device < 0: no CUDA array in the call, nothing to do. `op` names the
  // call in the error raised when the device cannot be selected.
  CudaDeviceScope(const char* op, int device);
  ~CudaDeviceScope();
  CudaDeviceScope(const CudaDeviceScope&) = delete;
  CudaDeviceScope& operator=(const CudaDeviceScope&) = delete;

 private:
  int previous_ = -1;  // the device to restore; -1: none changed
};

// Whether this build has the CUDA backend.
bool cuda_built();

// The CUDA device that can read `p` in place when `p` is CUDA managed
// (unified) memory, the current device; -1 for any other pointer and in a
// build without CUDA. MLX's CUDA backend allocates every array there and
// exports it through DLPack as host memory (python/longattn/mlx/_cuda.py).
int managed_memory_device(const void* p);

// Waits for the work queued on `stream` (a cudaStream_t, 0 = the legacy
// default stream) of the current device; nothing without CUDA.
void synchronize_stream(std::uintptr_t stream);

}  // namespace longattn::py
