// The executor: runs a plan on a backend submission by submission, measures
// each, refines the device profile, re-plans when a submission overshoots,
// and reports. Or, for a plan that needs none of that, only enqueues it.
#pragma once

#include <string>
#include <vector>

#include "core/backend.hpp"
#include "core/problem.hpp"
#include "longattn/plan.hpp"

namespace longattn::core {

// One measured submission: its rate key, work, time and fixed costs.
struct Observation {
  std::string key;  // DeviceProfile::rate_key of the problem
  double flops = 0;
  double measured_ms = 0;
  double fixed_ms = 0;  // predicted submission + dispatch overheads
  // The rate stays at least this after the step (execute() holds it near
  // the run's fastest recent submission); 0 = no bound.
  double floor_gflops = 0;
  // One of the first measurements of a rate that started as a guess: it
  // may move the rate further (refine_profile).
  bool early = false;
};

// The rate a measurement shows, GFLOP/s, given the rate `believed` now; 0
// when it says nothing (its time too close to its fixed costs, and not even
// a lower bound above `believed`).
double observed_gflops(const Observation& o, double believed);

// Folds one measurement into a profile's rate for its key: it replaces a
// guess (no rate for the key yet), and moves a measured rate by a bounded
// step (executor.cpp says how far).
void refine_profile(DeviceProfile& profile, const Observation& o);

// Runs `plan` (from make_plan on the same problem/profile/policy). Updates
// `profile` with what it measured and appends each measurement to
// `observed` (when given), so the caller can merge them into a shared
// profile. Throws Cancelled if `progress` says stop. A failure after work
// started is rethrown as the same kind of error carrying the partial report
// (Error::partial_report: what ran, which rows are final).
RunReport execute(const Problem& p, Backend& backend, DeviceProfile& profile, const Policy& policy,
                  const ProgressCallback& progress, Plan plan,
                  std::vector<Observation>* observed = nullptr);

// Whether `plan` may run untimed (enqueue): one submission, no running state
// (every dispatch single-pass), and, under a budget, predicted within a
// quarter of budget * safety. The last condition keeps the budget safe
// without a measurement: a measured rate that has drifted up to 4x still
// lands within budget (on a guessed rate the planner plans a single pass
// only if it fits even kRatePessimism times slower), and plans closer to
// the budget go through execute(), whose measurement corrects the profile.
bool enqueueable(const Plan& plan, const Policy& policy);

// Runs an enqueueable plan's dispatches outside any submission: nothing is
// timed or awaited (the CUDA backend only launches on its stream, and the
// result is ready when the stream gets there), so nothing refines the
// profile and there is no report.
void enqueue(const Problem& p, Backend& backend, const Plan& plan);

}  // namespace longattn::core
