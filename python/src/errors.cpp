#include "errors.hpp"

#include <nanobind/nanobind.h>

#include "longattn/error.hpp"
#include "report.hpp"

namespace longattn::py {
namespace {

const char* class_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::invalid_argument:
      return "InvalidArgument";
    case ErrorCode::unsupported:
      return "Unsupported";
    case ErrorCode::out_of_memory:
      return "OutOfMemory";
    case ErrorCode::cancelled:
      return "Cancelled";
    case ErrorCode::io:
      return "IoError";
    case ErrorCode::backend:
      break;
  }
  return "BackendError";
}

// Sets the Python error for `e`. Runs with the GIL held, inside nanobind's
// translation; anything failing here (the package half imported, say) falls
// back to a RuntimeError with the same message rather than losing it.
void set_python_error(const Error& e) {
  try {
    const nb::module_ errors = nb::module_::import_("longattn._errors");
    const nb::object type = errors.attr(class_name(e.code()));
    const nb::object exc = type(nb::str(e.what()));
    if (const RunReport* r = e.partial_report()) {
      exc.attr("report") = report_to_python(*r);
      exc.attr("finished_rows") = exc.attr("report").attr("finished_rows");
    }
    PyErr_SetObject(type.ptr(), exc.ptr());
  } catch (const nb::python_error&) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
}

}  // namespace

void register_error_translator() {
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const Error& e) {
      set_python_error(e);
    }
  });
}

}  // namespace longattn::py
