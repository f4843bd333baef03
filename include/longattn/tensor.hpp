// Tensor views: a pointer, a dtype, a shape and int64 element strides.
//
// longattn never owns or copies the caller's tensors. A view describes memory
// the caller keeps alive for the duration of the call. Strides are in
// elements (not bytes), so [B,H,L,D] and [B,L,H,D] layouts, or a slice of a
// larger preallocated KV cache, are all described without copies.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace longattn {

// Element types. `boolean` is one byte per element (0 = false, anything else
// = true) and is only accepted for masks.
enum class DType : std::uint8_t { float32, float16, bfloat16, boolean };

// Where a view's memory lives. The CUDA backend needs device (or managed)
// memory; the CPU backend needs host memory.
enum class Device : std::uint8_t { cpu, cuda };

std::size_t dtype_size(DType t);
const char* dtype_name(DType t);
const char* device_name(Device d);

// A strided view of up to 4 dimensions. Unused trailing dimensions of a view
// with rank < 4 are ignored. A view with data == nullptr is "absent" where
// the API allows an optional tensor.
struct TensorView {
  void* data = nullptr;                   // first element; may be const in spirit
  DType dtype = DType::float32;           // element type
  int rank = 0;                           // number of meaningful dims, 0..4
  std::array<std::int64_t, 4> shape{};    // sizes, outermost first
  std::array<std::int64_t, 4> strides{};  // element strides; may be 0 to broadcast
  Device device = Device::cpu;            // where data lives

  bool present() const { return data != nullptr || numel() > 0; }
  std::int64_t numel() const;
  std::string shape_string() const;  // "[2, 32, 4096, 128]"
};

// A contiguous (row-major) view of the given shape.
TensorView contiguous(void* data, DType dtype, std::array<std::int64_t, 4> shape,
                      Device device = Device::cpu);
// A contiguous view of rank 1..4; shape entries past `rank` are ignored.
TensorView contiguous(void* data, DType dtype, int rank, std::array<std::int64_t, 4> shape,
                      Device device = Device::cpu);

// A logical [B, H, L, D] view of memory laid out as [B, L, H, D] (the layout
// many inference engines keep their KV cache in): same elements, permuted
// strides, no copy.
TensorView bhld_from_blhd(void* data, DType dtype, std::int64_t B, std::int64_t L, std::int64_t H,
                          std::int64_t D, Device device = Device::cpu);

}  // namespace longattn
