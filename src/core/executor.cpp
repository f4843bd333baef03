// The executor. One loop over submissions; after each one it
//  - records measured vs predicted time,
//  - folds the measured rate into the device profile,
//  - re-plans the remaining work from where it stands when the submission
//    ran past budget * safety (or far under its prediction, so that the rest
//    is not split more finely than it needs),
//  - asks the progress callback whether to go on.
// The running state is allocated once, before the first dispatch, so an
// allocation failure leaves the caller's output untouched.
//
// enqueue() is the other path, for calls that want no measurement (decode):
// the dispatches of a one-submission, stateless plan go to the backend
// without begin/end_submission or finish, so a GPU backend neither records
// events nor waits.
#include "core/executor.hpp"

#include <algorithm>
#include <chrono>

#include "core/planner.hpp"

namespace longattn::core {
namespace {

// Where the work stands after a dispatch (the planner's resume point).
Cursor advance(const Dispatch& d) {
  if (writes_output(d.mode)) return {d.rect.q1, 0, 0};
  return {d.rect.q0, d.rect.q1 - d.rect.q0, d.rect.k1};
}

void add_finished(RunReport& r, std::int64_t q0, std::int64_t q1) {
  if (!r.finished_rows.empty() && r.finished_rows.back().second == q0)
    r.finished_rows.back().second = q1;
  else
    r.finished_rows.emplace_back(q0, q1);
}

// Blend a measured rate into the profile. A key's first sample counts
// fully (within 64x of the guess); later ones as a moving average, and one
// sample moves the rate by at most 4x either way, so a single submission slowed by another process
// (or by thread start-up) cannot shatter the rest of the plan into slivers.
void refine(DeviceProfile& prof, const Problem& p, double flops, double measured_ms,
            double fixed_ms) {
  const std::string key =
      DeviceProfile::rate_key(p.dtype, p.D, p.causal, p.mask_kind != MaskKind::none);
  const auto it = prof.gflops.find(key);
  const double prior = it != prof.gflops.end() ? it->second : prof.rate_gflops(key);
  // A submission whose time is small next to its fixed costs says more about
  // overheads and timer noise than about throughput: skip it, or a run of
  // tiny near-diagonal dispatches would drag the rate down.
  const double compute_ms = measured_ms - fixed_ms;
  if (flops <= 0 || compute_ms < std::max(0.2, 2 * fixed_ms)) return;
  double observed = flops / (compute_ms * 1e6);
  const double step = it == prof.gflops.end() ? 64 : 4;  // a fresh key's prior is only a guess
  observed = std::clamp(observed, prior / step, prior * step);
  const double w = it == prof.gflops.end() ? 1.0 : std::max(0.25, 1.0 / (prof.samples + 1));
  prof.gflops[key] = (1 - w) * prior + w * observed;
  ++prof.samples;
}

struct StateGuard {
  Backend& be;
  StateView s{};
  ~StateGuard() {
    if (s.rows > 0) be.release_state(s);
  }
};

}  // namespace

RunReport execute(const Problem& p, Backend& be, DeviceProfile& profile, const Policy& policy,
                  const ProgressCallback& progress, Plan plan) {
  const auto t_start = std::chrono::steady_clock::now();
  RunReport report;
  report.backend = be.name();
  report.budget_ms = policy.budget_ms;
  const double target = policy.budget_ms > 0 ? policy.budget_ms * policy.safety : 0;

  StateGuard state{be};
  if (plan.workspace_bytes > 0) state.s = be.alloc_state(p, plan.query_rows);

  // `plan.submissions` is consumed in order; a re-plan replaces the tail.
  std::vector<Submission> todo = plan.submissions;
  std::vector<Submission> done;
  std::vector<std::size_t> pending;  // indices of reports whose time comes from finish()
  Cursor cur;
  std::size_t next = 0;
  int speedups = 0;  // re-plans for running under prediction, capped below
  while (next < todo.size()) {
    const Submission& sub = todo[next];
    be.begin_submission();
    SubmissionReport sr;
    for (const Dispatch& d : sub.dispatches) {
      state.s.q0 = d.rect.q0;  // a dispatch always spans its whole query group
      be.dispatch(p, d, state.s);
      cur = advance(d);
      if (writes_output(d.mode)) add_finished(report, d.rect.q0, d.rect.q1);
      sr.flops += d.flops;
      ++sr.dispatches;
    }
    sr.predicted_ms = sub.predicted_ms;
    const std::optional<double> t = be.end_submission();
    done.push_back(sub);
    ++next;
    if (t) {
      sr.measured_ms = *t;
      sr.over_budget = policy.budget_ms > 0 && *t > policy.budget_ms;
      refine(profile, p, sr.flops, *t,
             profile.submission_overhead_ms +
                 profile.dispatch_overhead_ms * static_cast<double>(sr.dispatches));
    } else {
      pending.push_back(report.submissions.size());
    }
    report.submissions.push_back(sr);

    // Re-plan the rest from the cursor when the prediction was off enough to
    // matter: over the per-submission target, or under half the prediction.
    const bool more = next < todo.size();
    const bool over = t && target > 0 && *t > target;
    const bool under =
        t && target > 0 && *t < 0.5 * sr.predicted_ms && todo.size() - next >= 2 && speedups < 4;
    if (more && (over || under)) {
      Policy again = policy;
      if (state.s.rows > 0)  // stay within the state already allocated
        again.workspace_limit_bytes =
            std::min(policy.workspace_limit_bytes, state.s.rows * state_row_bytes(p));
      Plan rest = make_plan(p, profile, again, cur);
      if (rest.workspace_bytes > 0 && state.s.rows == 0)
        state.s = be.alloc_state(p, rest.query_rows);
      todo.erase(todo.begin() + static_cast<std::ptrdiff_t>(next), todo.end());
      todo.insert(todo.end(), rest.submissions.begin(), rest.submissions.end());
      ++report.replans;
      if (under) ++speedups;
    }

    if (progress && !progress(next, todo.size(), report)) {
      for (double ms : be.finish()) (void)ms;
      report.completed = false;
      report.plan = plan;
      report.plan.submissions = done;
      report.wall_ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_start)
              .count();
      throw Cancelled("[longattn::attention] cancelled by the progress callback after " +
                          std::to_string(next) + " of " + std::to_string(todo.size()) +
                          " submissions; only report.finished_rows of the output were written",
                      std::move(report));
    }
  }
  const std::vector<double> late = be.finish();
  for (std::size_t i = 0; i < pending.size() && i < late.size(); ++i) {
    SubmissionReport& sr = report.submissions[pending[i]];
    sr.measured_ms = late[i];
    sr.over_budget = policy.budget_ms > 0 && late[i] > policy.budget_ms;
  }
  for (const SubmissionReport& sr : report.submissions) {
    report.total_flops += sr.flops;
    report.total_ms += sr.measured_ms;
    if (sr.over_budget) ++report.budget_misses;
  }
  report.plan = std::move(plan);
  report.plan.submissions = std::move(done);
  report.plan.predicted_ms = 0;
  for (const Submission& s : report.plan.submissions) report.plan.predicted_ms += s.predicted_ms;
  report.completed = true;
  report.wall_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_start).count();
  return report;
}

namespace {

// One submission of single-pass dispatches: nothing to time, no state.
bool stateless_single_submission(const Plan& plan) {
  if (plan.submissions.size() != 1 || plan.workspace_bytes > 0) return false;
  for (const Dispatch& d : plan.submissions.front().dispatches)
    if (d.mode != Mode::single_pass) return false;
  return true;
}

}  // namespace

bool enqueueable(const Plan& plan, const Policy& policy) {
  return stateless_single_submission(plan) &&
         (policy.budget_ms <= 0 || plan.predicted_ms <= 0.25 * policy.budget_ms * policy.safety);
}

void enqueue(const Problem& p, Backend& be, const Plan& plan) {
  // Checked before the first launch, so a misuse writes nothing.
  if (!stateless_single_submission(plan))
    throw InvalidArgument("[longattn::attention] enqueue: the plan has " +
                          std::to_string(plan.submissions.size()) + " submissions and " +
                          std::to_string(plan.workspace_bytes) +
                          " bytes of running state; only one submission of single-pass "
                          "dispatches runs untimed");
  for (const Dispatch& d : plan.submissions.front().dispatches) be.dispatch(p, d, StateView{});
}

}  // namespace longattn::core
