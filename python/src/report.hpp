// Plans and run reports handed to Python: instances of the dataclasses in
// longattn/_report.py (plain Python objects: printable, comparable, safe to
// keep after the call), built field by field from the C++ structs.
#pragma once

#include <nanobind/nanobind.h>

#include <cstddef>

#include "longattn/plan.hpp"

namespace longattn::py {

namespace nb = nanobind;

nb::object plan_to_python(const Plan& plan);
nb::object report_to_python(const RunReport& report);

// The report a progress callback sees: one Python object for the whole run,
// brought up to date before each call. Submissions are appended, not
// rebuilt, so a run of n submissions costs O(n) in all, not O(n^2).
class LiveReport {
 public:
  LiveReport();
  const nb::object& update(const RunReport& now);

 private:
  nb::object report_;
  nb::object submissions_;  // report_.submissions, a list
  std::size_t seen_ = 0;    // submissions already appended
};

}  // namespace longattn::py
