// Typed errors. Every error longattn throws derives from longattn::Error and
// its message starts with the operation in brackets, then names the argument
// and the offending value, e.g.
//   [longattn::attention] k.shape[1] = 5 does not divide q.shape[1] = 32
#pragma once

#include <memory>
#include <stdexcept>
#include <string>

namespace longattn {

struct RunReport;  // plan.hpp

enum class ErrorCode {
  invalid_argument,  // bad shape, stride, dtype, option value
  unsupported,       // valid request this build/backend cannot serve
  out_of_memory,     // host or device allocation failed
  backend,           // a backend call failed (CUDA error, ...)
  cancelled,         // the progress callback asked to stop
  io,                // a file could not be read or written
};

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& what) : std::runtime_error(what), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

  // Set when the call failed after work had started (cancelled, a backend
  // error, out of memory mid-run): what ran, and which output rows are final
  // (RunReport::finished_rows; the other rows were not written, or only in
  // part). Null when the call failed before touching the output.
  const RunReport* partial_report() const noexcept { return partial_.get(); }
  void set_partial_report(std::shared_ptr<const RunReport> r) noexcept { partial_ = std::move(r); }

 private:
  ErrorCode code_;
  std::shared_ptr<const RunReport> partial_;
};

struct InvalidArgument : Error {
  explicit InvalidArgument(const std::string& w) : Error(ErrorCode::invalid_argument, w) {}
};
struct Unsupported : Error {
  explicit Unsupported(const std::string& w) : Error(ErrorCode::unsupported, w) {}
};
struct OutOfMemory : Error {
  explicit OutOfMemory(const std::string& w) : Error(ErrorCode::out_of_memory, w) {}
};
struct BackendError : Error {
  explicit BackendError(const std::string& w) : Error(ErrorCode::backend, w) {}
};
struct IoError : Error {
  explicit IoError(const std::string& w) : Error(ErrorCode::io, w) {}
};

}  // namespace longattn
