// A build without the CUDA backend: no device to select.
#include "device.hpp"

namespace longattn::py {

CudaDeviceScope::CudaDeviceScope(const char*, int) {}
CudaDeviceScope::~CudaDeviceScope() = default;

bool cuda_built() { return false; }

int managed_memory_device(const void*) { return -1; }

void synchronize_stream(std::uintptr_t) {}

}  // namespace longattn::py
