// Human-readable plan and run summaries, shared by `run` and `plan`.
#pragma once

#include <iosfwd>
#include <set>
#include <string>
#include <vector>

#include "longattn/plan.hpp"

namespace longattn::cli {

// Route, submissions and dispatches, the smallest, median and largest
// dispatch rectangle (query rows x keys), workspace, predicted time, and the
// per-submission target (budget x safety). With `dispatches`, every
// submission's dispatches too.
void print_plan(std::ostream& out, const Plan& plan, const Policy& policy, bool dispatches);

// "longattn: warning: ..." for each warning not in `said` (which records
// it), so a warning of the plan is not repeated by the run's report.
void print_warnings(std::ostream& err, const std::vector<std::string>& warnings,
                    std::set<std::string>& said);

// Measured vs predicted vs budget per submission. Up to 16 submissions (or
// all with `all`) as a table; more as a distribution plus the worst ones.
void print_submissions(std::ostream& out, const RunReport& report, bool all);

// "1.50 GiB", "2.0 MiB", "512 B".
std::string format_bytes(double bytes);

}  // namespace longattn::cli
