// DeviceBuffer for builds without CUDA: every allocation is Unsupported, and
// cuda_device_present() says why, so `--device auto` falls back to the CPU.
#include "device_buffers.hpp"
#include "longattn/error.hpp"

namespace longattn::cli {
namespace {

[[noreturn]] void unsupported() {
  throw Unsupported("[longattn cli] --device cuda: this build of longattn has no CUDA backend");
}

}  // namespace

bool cuda_device_present(std::string* why) {
  if (why) *why = "this build of longattn has no CUDA backend";
  return false;
}

std::string cuda_device_description() { return ""; }

DeviceBuffer::DeviceBuffer(std::size_t bytes) : bytes_(bytes) {
  if (bytes) unsupported();
}
DeviceBuffer::~DeviceBuffer() = default;
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  ptr_ = o.ptr_;
  bytes_ = o.bytes_;
  o.ptr_ = nullptr;
  o.bytes_ = 0;
  return *this;
}
void DeviceBuffer::upload(const void*, std::size_t bytes) {
  if (bytes) unsupported();
}
void DeviceBuffer::download(void*, std::size_t bytes) const {
  if (bytes) unsupported();
}

}  // namespace longattn::cli
