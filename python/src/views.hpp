// Arrays from Python turned into longattn::TensorView, without copying.
//
// Anything nanobind's ndarray reads is accepted: objects with __dlpack__
// (PyTorch, NumPy, CuPy, JAX, MLX, ...) or the buffer protocol. The view
// points at the caller's memory with the array's own element strides, so a
// transposed tensor or a slice of a preallocated cache is read in place.
//
// The two frameworks most calls come from are read without that general
// route, which costs microseconds a call (torch's Tensor.__dlpack__ is Python
// code): a NumPy array through its __array_struct__ (which also describes
// ml_dtypes.bfloat16, which has no DLPack export) and a torch tensor through
// torch.utils.dlpack.to_dlpack, what __dlpack__ itself ends in. Whatever
// those fast readers cannot describe exactly (another type, a tensor that
// requires grad or is a negated view, a byte-swapped or misaligned array, ...)
// takes the general route, after longattn._arrays.native() has had its say.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "device.hpp"
#include "longattn/tensor.hpp"

namespace longattn::py {

namespace nb = nanobind;

// How an array's dims map to the view's logical dims.
enum class Arrange {
  as_is,
  // A [B, S, H, D] array (layout "bshd") read as the logical [B, H, S, D]:
  // dims 1 and 2 swapped, strides with them.
  bshd,
  // Fewer than 4 dims: size-1 leading dims are prepended (NumPy's
  // broadcasting), so a [Lq, Lk] mask reads as [1, 1, Lq, Lk].
  leading_ones,
};

// One array as DLPack describes it (at most 4 dims; element strides).
struct ArrayDesc {
  void* data = nullptr;
  nb::dlpack::dtype dtype{};
  int device_type = 1;  // DLPack's kDLCPU
  int device_id = 0;
  int ndim = 0;
  std::array<std::int64_t, 4> shape{};
  std::array<std::int64_t, 4> strides{};
};

// The arrays of one call: converts each, keeps it (and so its memory) alive
// until destroyed, checks that all CUDA arrays are on one device and makes
// that device current from the first CUDA array until destroyed (the CUDA
// backend runs on the current device, and torch exports a CUDA tensor through
// DLPack only while its device is current), and keeps a note of every
// re-arrangement so that errors about logical dims can say how the caller's
// arrays were read.
class ArraySet {
 public:
  explicit ArraySet(const char* op) : op_(op) {}
  ArraySet(const ArraySet&) = delete;
  ArraySet& operator=(const ArraySet&) = delete;

  // `obj` may be None: an absent view; or a pair (uint16 array, "bfloat16"):
  // those bits read as bfloat16 (how longattn._arrays.native() passes arrays
  // of ml_dtypes.bfloat16 that the fast reader does not take).
  TensorView input(nb::handle obj, const std::string& name, Arrange arrange = Arrange::as_is);
  // As input(), but the array must be writable.
  TensorView output(nb::handle obj, const std::string& name, Arrange arrange = Arrange::as_is);

  // How the arrays were re-arranged, where `message` (an error about the
  // views) may need it to make sense: "" or " (note; note)".
  std::string notes_for(const std::string& message) const;

 private:
  TensorView view(nb::handle obj, const std::string& name, Arrange arrange, bool writable);
  bool read_fast(nb::handle obj, bool writable, ArrayDesc& d);
  TensorView import(nb::handle given, const std::string& name, Arrange arrange, bool writable);
  TensorView convert(const ArrayDesc& a, const std::string& name, Arrange arrange,
                     bool bfloat16_bits);
  void use_cuda_device(int device);

  struct Note {
    std::string trigger;  // said only for messages that contain this
    std::string text;
  };

  const char* op_;
  std::vector<nb::object> keep_;  // what the fast readers took (or made)
  std::vector<nb::ndarray<nb::ro>> inputs_;
  std::vector<nb::ndarray<>> outputs_;
  int cuda_device_ = -1;
  std::string cuda_device_owner_;  // the name of the first CUDA array
  std::optional<CudaDeviceScope> cuda_scope_;
  std::vector<Note> notes_;
};

}  // namespace longattn::py
