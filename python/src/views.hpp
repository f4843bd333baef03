// Arrays from Python turned into longattn::TensorView, without copying.
//
// Anything nanobind's ndarray reads is accepted: objects with __dlpack__
// (PyTorch, NumPy, CuPy, JAX, MLX, ...) or the buffer protocol. The view
// points at the caller's memory with the array's own element strides, so a
// transposed tensor or a slice of a preallocated cache is read in place.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <string>
#include <vector>

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

// The arrays of one call: converts each, keeps it (and so its memory) alive
// until destroyed, checks that all CUDA arrays are on one device, and keeps
// a note of every re-arrangement so that errors about logical dims can say
// how the caller's arrays were read.
class ArraySet {
 public:
  explicit ArraySet(const char* op) : op_(op) {}

  // `obj` may be None: an absent view; or a pair (uint16 array, "bfloat16"):
  // those bits read as bfloat16 (how the Python layer passes NumPy arrays of
  // ml_dtypes.bfloat16, which have no DLPack export).
  TensorView input(nb::handle obj, const std::string& name, Arrange arrange = Arrange::as_is);
  // As input(), but the array must be writable.
  TensorView output(nb::handle obj, const std::string& name, Arrange arrange = Arrange::as_is);

  // The CUDA device of the CUDA arrays; -1 when none was given.
  int cuda_device() const { return cuda_device_; }
  // How the arrays were re-arranged, where `message` (an error about the
  // views) may need it to make sense: "" or " (note; note)".
  std::string notes_for(const std::string& message) const;

 private:
  template <class Array>
  TensorView convert(const Array& a, const std::string& name, Arrange arrange, bool bfloat16_bits);

  struct Note {
    std::string trigger;  // said only for messages that contain this
    std::string text;
  };

  const char* op_;
  std::vector<nb::ndarray<nb::ro>> inputs_;
  std::vector<nb::ndarray<>> outputs_;
  int cuda_device_ = -1;
  std::string cuda_device_owner_;  // the name of the first CUDA array
  std::vector<Note> notes_;
};

}  // namespace longattn::py
