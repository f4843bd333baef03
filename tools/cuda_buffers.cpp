// DeviceBuffer on the CUDA runtime. Compiled only when the library is built
// with CUDA (LONGATTN_HAVE_CUDA); cuda_buffers_stub.cpp stands in otherwise.
#include <cuda_runtime.h>

#include <string>

#include "device_buffers.hpp"
#include "longattn/error.hpp"
#include "summary.hpp"

namespace longattn::cli {
namespace {

void check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  const std::string msg = std::string("[longattn cli] ") + what + ": " + cudaGetErrorString(e);
  if (e == cudaErrorMemoryAllocation) throw OutOfMemory(msg);
  throw BackendError(msg);
}

}  // namespace

bool cuda_device_present(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e == cudaSuccess && n > 0) return true;
  if (why) {
    // On a machine without a GPU there is usually no driver either, and the
    // runtime then says "CUDA driver version is insufficient for CUDA
    // runtime version", which reads like an upgrade is needed. Say what it
    // means first, and keep the runtime's words for the other cases.
    if (e == cudaSuccess || e == cudaErrorNoDevice)
      *why = "no CUDA device found";
    else if (e == cudaErrorInsufficientDriver)
      *why =
          "no CUDA device (no NVIDIA driver is loaded, or it is older than this build's CUDA "
          "runtime)";
    else
      *why = std::string("no usable CUDA device: ") + cudaGetErrorString(e);
  }
  return false;
}

std::string cuda_device_description() {
  int dev = 0;
  cudaDeviceProp prop{};
  if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&prop, dev) != cudaSuccess)
    return "";
  return std::string(prop.name) + " (device " + std::to_string(dev) + ")";
}

DeviceBuffer::DeviceBuffer(std::size_t bytes) : bytes_(bytes) {
  if (bytes == 0) return;
  check(
      cudaMalloc(&ptr_, bytes),
      ("cudaMalloc of " + format_bytes(static_cast<double>(bytes)) + " of device memory").c_str());
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr_) cudaFree(ptr_);
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (ptr_) cudaFree(ptr_);
    ptr_ = o.ptr_;
    bytes_ = o.bytes_;
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

void DeviceBuffer::upload(const void* host, std::size_t bytes) {
  if (bytes) check(cudaMemcpy(ptr_, host, bytes, cudaMemcpyHostToDevice), "cudaMemcpy to device");
}

void DeviceBuffer::download(void* host, std::size_t bytes) const {
  if (bytes) check(cudaMemcpy(host, ptr_, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy to host");
}

}  // namespace longattn::cli
