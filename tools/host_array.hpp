// An owned, contiguous host array: what the tool reads from .npy files,
// generates, and writes back. The library only ever sees views of it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "longattn/error.hpp"
#include "longattn/tensor.hpp"

namespace longattn::cli {

struct HostArray {
  DType dtype = DType::float32;
  std::vector<std::int64_t> shape;  // C order; rank 0 is a scalar
  std::vector<std::byte> data;      // little-endian elements, numel * dtype_size

  HostArray() = default;
  // Zero-filled. `what` names the array in the OutOfMemory error thrown
  // when the memory cannot be had ("q", "out", "mask from m.npy").
  HostArray(DType t, std::vector<std::int64_t> s, const std::string& what = "an array");

  bool empty() const { return shape.empty() && data.empty(); }
  std::int64_t numel() const {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
  // A contiguous host view; rank must be 1..4.
  TensorView view() {
    if (shape.empty() || shape.size() > 4)
      throw InvalidArgument("[longattn] an array of rank " + std::to_string(shape.size()) +
                            " cannot be viewed as a tensor (rank 1..4)");
    std::array<std::int64_t, 4> s{1, 1, 1, 1};
    for (std::size_t i = 0; i < shape.size(); ++i) s[i] = shape[i];
    return contiguous(data.data(), dtype, static_cast<int>(shape.size()), s);
  }
  template <class T>
  T* as() {
    return reinterpret_cast<T*>(data.data());
  }
  template <class T>
  const T* as() const {
    return reinterpret_cast<const T*>(data.data());
  }
};

// Element i (C order) as a double, whatever the dtype.
double element_as_double(const HostArray& a, std::int64_t i);

}  // namespace longattn::cli
