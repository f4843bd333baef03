// A build with the CUDA backend: the arrays' device is made current for the
// call, as PyTorch's own ops do (torch.cuda.device).
#include <cuda_runtime_api.h>

#include <string>

#include "device.hpp"
#include "longattn/error.hpp"

namespace longattn::py {

CudaDeviceScope::CudaDeviceScope(const char* op, int device) {
  if (device < 0) return;
  int current = 0;
  if (cudaGetDevice(&current) != cudaSuccess) {
    // No usable device (no GPU, no driver): the library's own check says
    // so, as an Unsupported error naming the cause.
    (void)cudaGetLastError();
    return;
  }
  if (current == device) return;
  if (const cudaError_t e = cudaSetDevice(device); e != cudaSuccess) {
    (void)cudaGetLastError();
    throw BackendError(std::string("[") + op + "] cannot select cuda:" + std::to_string(device) +
                       " (" + cudaGetErrorName(e) + ": " + cudaGetErrorString(e) + ")");
  }
  previous_ = current;
}

CudaDeviceScope::~CudaDeviceScope() {
  // A destructor must not throw; the call's own result says what went wrong.
  if (previous_ >= 0 && cudaSetDevice(previous_) != cudaSuccess) (void)cudaGetLastError();
}

bool cuda_built() { return true; }

int managed_memory_device(const void* p) {
  cudaPointerAttributes a{};
  if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
    (void)cudaGetLastError();  // no device, or a pointer CUDA never saw
    return -1;
  }
  if (a.type != cudaMemoryTypeManaged) return -1;
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    (void)cudaGetLastError();
    return -1;
  }
  return device;
}

void synchronize_stream(std::uintptr_t stream) {
  if (const cudaError_t e = cudaStreamSynchronize(reinterpret_cast<cudaStream_t>(stream));
      e != cudaSuccess) {
    (void)cudaGetLastError();
    throw BackendError(std::string("[longattn] cudaStreamSynchronize: ") + cudaGetErrorName(e) +
                       ": " + cudaGetErrorString(e));
  }
}

}  // namespace longattn::py
