// The executor: runs a plan on a backend submission by submission, measures
// each, refines the device profile, re-plans when a submission overshoots,
// and reports.
#pragma once

#include "core/backend.hpp"
#include "core/problem.hpp"
#include "longattn/plan.hpp"

namespace longattn::core {

// Runs `plan` (from make_plan on the same problem/profile/policy). Updates
// `profile` with what it measured. Throws Cancelled if `progress` says stop.
RunReport execute(const Problem& p, Backend& backend, DeviceProfile& profile, const Policy& policy,
                  const ProgressCallback& progress, Plan plan);

}  // namespace longattn::core
