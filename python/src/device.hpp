// The CUDA device a call runs on. The CUDA backend runs on the calling
// thread's current device (cudaGetDevice), so the module makes the arrays'
// device current for the call and restores the previous one afterwards
// (views.hpp's ArraySet holds the scope).
// device_cuda.cpp in a build with the CUDA backend, device_stub.cpp without
// (there every CUDA array is refused by the library itself).
#pragma once

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

}  // namespace longattn::py
