// Human-readable plan and run summaries, shared by `run` and `plan`.
#pragma once

#include <iosfwd>

#include "longattn/plan.hpp"

namespace longattn::cli {

// Route, query groups, key chunks, submissions, workspace, predicted time,
// and the per-submission target (budget x safety). With `dispatches`, every
// submission's dispatches too.
void print_plan(std::ostream& out, const Plan& plan, const Policy& policy, bool dispatches);

// Measured vs predicted vs budget per submission. Up to 16 submissions (or
// all with `all`) as a table; more as a distribution plus the worst ones.
void print_submissions(std::ostream& out, const RunReport& report, bool all);

// "1.50 GiB", "2.0 MiB", "512 B".
std::string format_bytes(double bytes);

}  // namespace longattn::cli
