// TensorView helpers and dtype names.
#include "longattn/tensor.hpp"

#include <algorithm>
#include <cstdint>
#include <sstream>

#include "longattn/attention.hpp"

namespace longattn {

std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::float32:
      return 4;
    case DType::float16:
      return 2;
    case DType::bfloat16:
      return 2;
    case DType::boolean:
      return 1;
  }
  throw InvalidArgument("[longattn::dtype_size] unknown dtype " + std::to_string(int(t)));
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::float32:
      return "float32";
    case DType::float16:
      return "float16";
    case DType::bfloat16:
      return "bfloat16";
    case DType::boolean:
      return "boolean";
  }
  return "unknown";
}

const char* device_name(Device d) { return d == Device::cuda ? "cuda" : "cpu"; }

const char* backend_name(BackendKind b) {
  switch (b) {
    case BackendKind::automatic:
      return "auto";
    case BackendKind::cpu:
      return "cpu";
    case BackendKind::cuda:
      return "cuda";
  }
  return "unknown";
}

const char* mode_name(Mode m) {
  switch (m) {
    case Mode::single_pass:
      return "single_pass";
    case Mode::init:
      return "init";
    case Mode::accumulate:
      return "accumulate";
    case Mode::finalize:
      return "finalize";
  }
  return "unknown";
}

std::int64_t TensorView::numel() const {
  if (rank <= 0) return 0;
  // Saturates instead of wrapping: validation reports the overflow by name.
  std::int64_t n = 1;
  for (int i = 0; i < rank && i < 4; ++i)
    if (__builtin_mul_overflow(n, shape[static_cast<std::size_t>(i)], &n)) return INT64_MAX;
  return n;
}

std::string TensorView::shape_string() const {
  std::ostringstream s;
  s << '[';
  for (int i = 0; i < rank && i < 4; ++i)
    s << (i ? ", " : "") << shape[static_cast<std::size_t>(i)];
  s << ']';
  return s.str();
}

TensorView contiguous(void* data, DType dtype, int rank, std::array<std::int64_t, 4> shape,
                      Device device) {
  TensorView t;
  t.data = data;
  t.dtype = dtype;
  t.rank = rank;
  t.device = device;
  // Strides step over max(size, 1) elements, as PyTorch's do: an empty
  // tensor ([2, 32, 0, 128]) then keeps distinct strides and does not look
  // aliased. A product past int64 saturates instead of wrapping (undefined
  // behaviour); validation then refuses the view by name.
  std::int64_t stride = 1;
  for (int i = rank - 1; i >= 0; --i) {
    const auto u = static_cast<std::size_t>(i);
    t.shape[u] = shape[u];
    t.strides[u] = stride;
    if (__builtin_mul_overflow(stride, std::max<std::int64_t>(shape[u], 1), &stride))
      stride = INT64_MAX;
  }
  return t;
}

TensorView contiguous(void* data, DType dtype, std::array<std::int64_t, 4> shape, Device device) {
  return contiguous(data, dtype, 4, shape, device);
}

TensorView bhld_from_blhd(void* data, DType dtype, std::int64_t B, std::int64_t L, std::int64_t H,
                          std::int64_t D, Device device) {
  TensorView t;
  t.data = data;
  t.dtype = dtype;
  t.rank = 4;
  t.device = device;
  t.shape = {B, H, L, D};
  // Strides of the [B, L, H, D] memory, built like contiguous()'s (empty
  // dims count as 1, overflow saturates).
  const TensorView m = contiguous(nullptr, dtype, {B, L, H, D});
  t.strides = {m.strides[0], m.strides[2], m.strides[1], m.strides[3]};
  return t;
}

std::size_t Plan::num_dispatches() const {
  std::size_t n = 0;
  for (const auto& s : submissions) n += s.dispatches.size();
  return n;
}

}  // namespace longattn
