// A build without the CUDA backend: no device to select.
#include "device.hpp"

namespace longattn::py {

CudaDeviceScope::CudaDeviceScope(const char*, int) {}
CudaDeviceScope::~CudaDeviceScope() = default;

bool cuda_built() { return false; }

}  // namespace longattn::py
