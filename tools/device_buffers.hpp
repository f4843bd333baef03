// Device memory for `--device cuda`. Implemented with the CUDA runtime in
// cuda_buffers.cpp when the library is built with CUDA, and by
// cuda_buffers_stub.cpp otherwise (CMake picks one), so a CPU-only build
// compiles no CUDA and carries no #ifdef.
#pragma once

#include <cstddef>
#include <string>

namespace longattn::cli {

// True when this build has the CUDA runtime and at least one device is
// visible. `why` (optional) receives the reason when false.
bool cuda_device_present(std::string* why = nullptr);
// "NVIDIA H100 80GB HBM3 (device 0)" or "" without CUDA.
std::string cuda_device_description();

// Owned device allocation. Throws OutOfMemory / BackendError / Unsupported.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) {
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return ptr_; }
  std::size_t size() const { return bytes_; }
  void upload(const void* host, std::size_t bytes);
  void download(void* host, std::size_t bytes) const;

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

}  // namespace longattn::cli
