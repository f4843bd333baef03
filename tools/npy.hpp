// NumPy .npy files (format versions 1.0, 2.0 and 3.0), the tool's file format
// for q, k, v, masks, sinks, outputs and LSE.
//
// Supported element types, all little-endian, C order only:
//   '<f4' float32, '<f2' float16, '|b1' bool (masks),
//   bfloat16 as either '|V2' / '<V2' (what np.save writes for an
//   ml_dtypes.bfloat16 array) or '<u2' raw bits when the caller says the
//   file holds bfloat16 (`longattn run --bf16`). NumPy has no bfloat16 of its
//   own, so the raw-bits convention is the one every framework can produce:
//   np.save("q.npy", x.view(np.uint16)) or t.view(torch.int16).numpy().
// The tool writes bfloat16 outputs as '<u2' raw bits.
//
// Malformed files throw NpyError, an IoError (longattn/error.hpp) that also
// says which rule the file broke, so tests and callers can tell them apart.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "host_array.hpp"
#include "longattn/error.hpp"
#include "longattn/tensor.hpp"

namespace longattn::cli {

enum class NpyErrorKind {
  open_failed,        // cannot open or read the file
  bad_magic,          // not a .npy file
  bad_version,        // format version other than 1.0, 2.0, 3.0
  bad_header,         // header dict unreadable or missing keys
  unsupported_dtype,  // descr the tool cannot use (big-endian, int, float64, ...)
  fortran_order,      // fortran_order True: the tool reads C order only
  truncated,          // fewer data bytes than the shape needs
  trailing_data,      // more data bytes than the shape needs
  shape_mismatch,     // valid file, but not the shape the caller needs
  write_failed,       // cannot write the file
};
const char* npy_error_kind_name(NpyErrorKind k);

class NpyError : public IoError {
 public:
  NpyError(NpyErrorKind kind, const std::string& what) : IoError(what), kind_(kind) {}
  NpyErrorKind kind() const noexcept { return kind_; }

 private:
  NpyErrorKind kind_;
};

struct NpyReadOptions {
  bool u2_is_bf16 = false;  // read '<u2' as bfloat16 raw bits (--bf16)
};

// `name` labels error messages ("q.npy", a path, "buffer").
HostArray parse_npy(std::span<const std::byte> bytes, const std::string& name,
                    const NpyReadOptions& options = {});
// Reads a file, pipe or FIFO (not only seekable files) straight into the
// array, so the data is in memory once.
HostArray read_npy(const std::string& path, const NpyReadOptions& options = {});

// The descr the tool writes for a dtype ('<f4', '<f2', '<u2' for bfloat16, '|b1').
std::string npy_descr(DType dtype);
// What precedes the data in a file: magic, version, header length and the
// padded header dict.
std::string npy_header(DType dtype, std::span<const std::int64_t> shape);
// Version 1.0 header when it fits (it always does for rank <= 4), else 2.0.
std::vector<std::byte> encode_npy(DType dtype, std::span<const std::int64_t> shape,
                                  const void* data);
// Atomic (write_atomically): on failure `path` keeps its old contents.
void write_npy(const std::string& path, DType dtype, std::span<const std::int64_t> shape,
               const void* data);

// Throws NpyError(shape_mismatch) naming `what` unless `a` has shape `want`.
void require_shape(const HostArray& a, std::span<const std::int64_t> want, const std::string& what);

}  // namespace longattn::cli
