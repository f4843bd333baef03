// The executor. One loop over submissions; after each one it
//  - records measured vs predicted time,
//  - folds the measured rate into the device profile (a bounded step, so
//    one noisy measurement cannot swing the plan; but a guess is replaced
//    outright, see refine_profile),
//  - fits the fixed cost per dispatch this run really pays (cost_fit.hpp),
//  - re-plans the remaining work from where it stands when the rate or the
//    fixed cost it now believes differs enough from the plan's, and the
//    submission ran past budget * safety, or the next one would at the rate
//    now believed (or it ran kReplanRatio faster than predicted, so that
//    the rest is not split more finely than it needs),
//  - asks the progress callback whether to go on.
// A run whose rate was a guess (no rate for its key in the profile) starts
// with the planner's probe (planner.hpp, kRatePessimism). Its measurement
// always re-plans the rest, however fast or slow it ran, with the next
// submission at a quarter of the target (RateTrust::probed). Without a host
// wait at each submission (CUDA's host_wait = false) the probe is still
// waited for: it is the one measurement the rest is planned from.
// The running state the first plan needs is allocated before the first
// dispatch, so that allocation failing leaves the caller's output
// untouched; a re-plan that needs state where the first plan had none
// allocates it then (a failure there is a mid-run failure). However the run
// ends (done, cancelled, a backend error, out of memory), the report it
// leaves says what ran and which output rows are final. A plan by KV head
// (head_passes.hpp) runs each submission on its head's problem, re-plans
// from the head it stands in, and finishes rows only in its last pass.
//
// enqueue() is the other path, for calls that want no measurement (decode):
// the dispatches of a one-submission, stateless plan go to the backend
// without begin/end_submission or finish, so a GPU backend neither records
// events nor waits.
#include "core/executor.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <new>

#include "core/cost_fit.hpp"
#include "core/faults.hpp"
#include "core/head_passes.hpp"
#include "core/planner.hpp"

namespace longattn::core {
namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kOp = "longattn::attention";

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

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

void add_warning(RunReport& r, const std::string& w) {
  if (std::find(r.warnings.begin(), r.warnings.end(), w) == r.warnings.end())
    r.warnings.push_back(w);
}

// A re-plan pays off only when the rate it would plan with has moved this
// much from the one the current plan was made with; below that it would
// produce the same plan again. A submission that ran this much faster than
// predicted re-plans the rest larger (the rate learned from a probe or a
// guess too slow grows the plan without leaving it up to 2x finer than it
// needs, as half the prediction did).
constexpr double kReplanRatio = 1.25;
// Re-planning may take at most this share of the run's time (wall, or the
// device's where that is longer), so noisy timings on a busy machine cannot
// turn the run into a planning loop.
constexpr double kReplanShare = 0.1;
// The first re-plans are always allowed: they are the ones that correct a
// guessed rate, and the outcome should not depend on how fast the host plans.
constexpr int kFreeReplans = 8;

// On a machine shared with other work, a dispatch now and then waits out a
// whole scheduler time slice (milliseconds), whatever its size. Read as
// throughput, those stalls make the rate fall, the plan shrink, the stalls
// weigh more, and the rate fall again: a run trying a 2 ms budget next to two
// busy processes once made 114,618 submissions instead of 399. So the rate is
// held within kBestRatio of the fastest recent submission of the run; that
// bound decays by kBestDecay a submission, so a lasting slowdown still wins.
constexpr double kBestRatio = 4;
constexpr double kBestDecay = 0.98;
// Measurements of a guessed rate that count as early (refine_profile).
constexpr int kEarlySamples = 4;
// Early samples move the rate at most this factor at a time.
constexpr double kEarlyStep = 8;

// What a run learns from its timed submissions beyond the profile: the
// fixed cost per dispatch it really pays (cost_fit.hpp) and the rate of its
// fastest recent submission (kBestRatio). Turns each measurement into the
// observation that refines the profile.
class RunMeasurements {
 public:
  RunMeasurements(const DeviceProfile& prof, std::string key)
      : key_(std::move(key)),
        fresh_key_(prof.gflops.count(key_) == 0),
        fixed_ms_(prof.dispatch_overhead_ms) {}

  Observation observe(const DeviceProfile& prof, double dispatches, double flops, double ms) {
    // The run's first submission also pays what happens once a run (thread
    // start-up, caches and pages first touched): no cost per dispatch, so it
    // stays out of the fit. Next to a probe of a few dispatches, a 9 ms
    // start-up passed for a fixed cost of milliseconds per dispatch, and the
    // re-plan made dispatches far larger than the budget.
    if (observations_++ > 0) fit_.add(dispatches, flops, ms - prof.submission_overhead_ms);
    fixed_ms_ = std::max(prof.dispatch_overhead_ms, fit_.fixed_ms().value_or(0));
    Observation o{key_, flops, ms, prof.submission_overhead_ms + fixed_ms_ * dispatches};
    o.early = fresh_key_ && informative_ < kEarlySamples;
    const double v = observed_gflops(o, prof.rate_gflops(key_));
    if (v > 0) ++informative_;
    best_rate_ = std::max(v, best_rate_ * kBestDecay);
    o.floor_gflops = best_rate_ / kBestRatio;
    return o;
  }
  // Fixed cost per dispatch, ms: the profile's, or more where this run
  // measured more.
  double fixed_ms() const { return fixed_ms_; }
  // Whether the profile had no rate for the key when the run started.
  bool fresh_key() const { return fresh_key_; }

 private:
  std::string key_;
  bool fresh_key_;  // the profile had no rate for the key: it is a guess
  double fixed_ms_;
  FixedCostFit fit_;
  int observations_ = 0;  // submissions observed so far
  int informative_ = 0;   // measurements that said something about the rate
  double best_rate_ = 0;  // the fastest recent submission's rate, decaying
};

struct StateGuard {
  Backend& be;
  StateView s{};
  ~StateGuard() {
    if (s.rows > 0) be.release_state(s);  // noexcept: safe while unwinding
  }
};

// The report's totals and plan, from what ran: the same for a run that
// completed and one that stopped early.
// `late`: the times finish() returned, for the submissions at `pending`
// (timed by events read at the end). `replan_warning` is said only if the
// budget was really missed.
void close_report(RunReport& report, Plan plan, std::vector<Submission> done,
                  const std::vector<std::size_t>& pending, const std::vector<double>& late,
                  const std::vector<std::string>& replan_warning, Clock::time_point start,
                  bool completed) {
  for (std::size_t i = 0; i < pending.size() && i < late.size(); ++i)
    report.submissions[pending[i]].measured_ms = late[i];
  report.total_flops = 0;
  report.total_ms = 0;
  report.budget_misses = 0;
  for (SubmissionReport& sr : report.submissions) {
    sr.over_budget = report.budget_ms > 0 && sr.measured_ms > report.budget_ms;
    report.total_flops += sr.flops;
    report.total_ms += sr.measured_ms;
    if (sr.over_budget) ++report.budget_misses;
  }
  if (report.budget_misses > 0)
    for (const std::string& w : replan_warning) add_warning(report, w);
  report.plan = std::move(plan);
  report.plan.submissions = std::move(done);
  report.plan.predicted_ms = 0;
  for (const Submission& s : report.plan.submissions) report.plan.predicted_ms += s.predicted_ms;
  report.completed = completed;
  report.wall_ms = ms_since(start);
}

std::string rows_string(const RunReport& r) {
  if (r.finished_rows.empty()) return "none";
  std::string s;
  for (const auto& [a, b] : r.finished_rows)
    s += (s.empty() ? "[" : ", [") + std::to_string(a) + ", " + std::to_string(b) + ")";
  return s;
}

template <class E>
[[noreturn]] void raise(E err, const std::shared_ptr<const RunReport>& report) {
  err.set_partial_report(report);
  throw err;
}

// Rethrows `e` as the same kind of error, its message extended by where the
// run stopped, carrying the partial report.
[[noreturn]] void rethrow_with_report(const Error& e, RunReport report, std::size_t done,
                                      std::size_t planned) {
  const std::string what = std::string(e.what()) + " (stopped after " + std::to_string(done) +
                           " of " + std::to_string(planned) +
                           " submissions; final output rows: " + rows_string(report) +
                           "; other rows were not written, or only in part)";
  const auto shared = std::make_shared<const RunReport>(std::move(report));
  switch (e.code()) {
    case ErrorCode::invalid_argument:
      raise(InvalidArgument(what), shared);
    case ErrorCode::unsupported:
      raise(Unsupported(what), shared);
    case ErrorCode::out_of_memory:
      raise(OutOfMemory(what), shared);
    case ErrorCode::io:
      raise(IoError(what), shared);
    case ErrorCode::cancelled:
      raise(Cancelled(what, *shared), shared);
    case ErrorCode::backend:
      break;
  }
  raise(BackendError(what), shared);
}

}  // namespace

double observed_gflops(const Observation& o, double believed) {
  if (!(o.flops > 0) || !(o.measured_ms > 0)) return 0;
  const double compute_ms = o.measured_ms - o.fixed_ms;
  if (compute_ms >= std::max(0.2, 2 * o.fixed_ms)) return o.flops / (compute_ms * 1e6);
  // Too short to trust as a rate (timer noise, fixed costs larger than
  // predicted)... but counting all of its time as compute bounds the rate
  // from below. That bound is worth taking when it says the device is
  // faster than believed: without it, a rate guessed (or measured under
  // load) far too low plans submissions so short that none would ever be
  // measured long enough to correct it.
  const double at_least = o.flops / (o.measured_ms * 1e6);
  return at_least > believed ? at_least : 0;
}

void refine_profile(DeviceProfile& prof, const Observation& o) {
  const auto it = prof.gflops.find(o.key);
  const bool guess = it == prof.gflops.end();
  const double prior = guess ? prof.rate_gflops(o.key) : it->second;
  const double observed = observed_gflops(o, prior);
  if (observed <= 0) return;
  double rate = observed;
  // No rate for the key: the prior is a guess (another key's rate or the
  // default), possibly many times off, and the first measurement replaces
  // it. Moving only part of the way would plan the next submission from a
  // rate still too fast: with the 11x of an H200's masked kernels, half the
  // way in log space leaves 3.4x.
  if (!guess) {
    // Early samples of a rate that started as a guess: slower than believed
    // is taken whole (a rate believed too fast is what breaks the budget,
    // while one too slow only costs a few small submissions, and the run's
    // fastest recent submission bounds it from below, see kBestRatio);
    // faster moves half the way. By at most kEarlyStep a sample. Later
    // samples move a quarter of the way, by at most 2x (so at most 19%):
    // one submission slowed by another process, by thread start-up or by a
    // lost time slice nudges the plan instead of shattering it; a lasting
    // change (a busy machine) still wins within a handful of submissions.
    const double most = std::log(o.early ? kEarlyStep : 2.0);
    const double step = std::clamp(std::log(observed / prior), -most, most);
    const double share = !o.early ? 0.25 : step < 0 ? 1.0 : 0.5;
    rate = prior * std::exp(share * step);
  }
  prof.gflops[o.key] = std::max(rate, o.floor_gflops);
  if (prof.samples < std::numeric_limits<int>::max()) ++prof.samples;
}

RunReport execute(const Problem& p, Backend& be, DeviceProfile& profile, const Policy& policy,
                  const ProgressCallback& progress, Plan plan, std::vector<Observation>* observed) {
  const Clock::time_point t_start = Clock::now();
  RunReport report;
  report.backend = be.name();
  report.budget_ms = policy.budget_ms;
  for (const std::string& w : plan.warnings) add_warning(report, w);
  const double target = policy.budget_ms > 0 ? policy.budget_ms * policy.safety : 0;
  const std::string key = rate_key(p);

  // A plan by KV head runs each submission on its head's problem; every
  // head's has the same shape, so one running state serves them all.
  const bool by_head = plan.by_kv_head;
  const Problem shape = by_head ? kv_head_problem(p, 0) : p;
  auto problem_of = [&](const Submission& s) {
    return s.kv_head < 0 ? p : kv_head_problem(p, s.kv_head);
  };
  StateGuard state{be};
  if (plan.workspace_bytes > 0) state.s = be.alloc_state(shape, plan.query_rows);

  // `plan.submissions` is consumed in order; a re-plan replaces the tail.
  std::vector<Submission> todo = plan.submissions;
  std::vector<Submission> done;
  std::vector<std::size_t> pending;  // indices of reports whose time comes from finish()
  Cursor cur;
  std::int64_t head = 0;  // by KV head: the head `cur` is in
  std::size_t next = 0;
  double planned_rate = profile.rate_gflops(key);
  double replan_ms = 0;    // time spent re-planning
  double measured_ms = 0;  // device time of the submissions so far
  const bool budget_warned = !plan.budget_kept;
  std::vector<std::string> replan_warning;  // said at the end if the budget was missed
  RunMeasurements learned(profile, key);
  double planned_fixed = learned.fixed_ms();  // what the plan being run assumed
  // The rate is a guess: the plan starts with a probe (planner.hpp), and
  // the first measurement re-plans the rest.
  bool probing = learned.fresh_key();
  bool dropped = false;  // a planted drop_chunk fault has acted (faults.hpp)

  try {
    while (next < todo.size()) {
      const Submission& sub = todo[next];
      const Problem sp = problem_of(sub);
      // Rows are final once their last head is done.
      const bool finishes_rows = sub.kv_head < 0 || sub.kv_head == p.Hkv - 1;
      head = std::max<std::int64_t>(sub.kv_head, 0);
      be.begin_submission();
      SubmissionReport sr;
      for (const Dispatch& d : sub.dispatches) {
        state.s.q0 = d.rect.q0;  // a dispatch always spans its whole query group
        Dispatch sent = d;
        if (planted(Fault::drop_chunk) && !dropped && !writes_output(d.mode)) {
          sent.rect.k1 = sent.rect.k0;  // faults.hpp: this chunk's keys are lost
          dropped = true;
        }
        const std::string kernel = be.dispatch(sp, sent, state.s);
        if (!kernel.empty() &&
            std::find(sr.kernels.begin(), sr.kernels.end(), kernel) == sr.kernels.end())
          sr.kernels.push_back(kernel);
        cur = advance(d);
        if (writes_output(d.mode) && finishes_rows) add_finished(report, d.rect.q0, d.rect.q1);
        sr.flops += d.flops;
        ++sr.dispatches;
      }
      sr.predicted_ms = sub.predicted_ms;
      std::optional<double> t = be.end_submission();
      done.push_back(sub);
      ++next;
      if (!t && probing && next < todo.size()) {
        // The probe's time is needed now, not at the end: wait for it.
        const std::vector<double> late = be.finish();
        if (late.size() == pending.size() + 1) {
          for (std::size_t i = 0; i < pending.size(); ++i)
            report.submissions[pending[i]].measured_ms = late[i];
          pending.clear();
          t = late.back();
        }
      }
      if (t) {
        sr.measured_ms = *t;
        measured_ms += *t;
        sr.over_budget = policy.budget_ms > 0 && *t > policy.budget_ms;
        const Observation o =
            learned.observe(profile, static_cast<double>(sr.dispatches), sr.flops, *t);
        refine_profile(profile, o);
        if (observed) observed->push_back(o);
        // A probe too short to show a rate (its time mostly fixed costs)
        // still bounds the rate from below, all of its time counted as
        // compute: the rest of this run is planned from that bound, never
        // from the guess again. It stays out of the observations, so a
        // shared profile keeps only rates that were really measured.
        if (probing && o.flops > 0 && *t > 0 && !profile.gflops.count(key))
          profile.gflops[key] = std::max(o.flops / (*t * 1e6), 1e-6);
      } else {
        pending.push_back(report.submissions.size());
      }
      report.submissions.push_back(sr);

      // Re-plan the rest from the cursor when the prediction was off enough
      // to matter (over the per-submission target, the next submission over
      // it at the rate now believed, or kReplanRatio faster than predicted)
      // and the rate the planner would now use has moved enough to change
      // the plan, within the re-planning time share. After the probe, always.
      const bool more = next < todo.size();
      const double rate = profile.rate_gflops(key);
      const bool over = t && target > 0 && *t > target;
      const bool next_over =
          t && target > 0 && more && todo[next].predicted_ms * planned_rate / rate > target;
      const bool under =
          t && target > 0 && *t * kReplanRatio < sr.predicted_ms && todo.size() - next >= 2;
      auto moved_from = [](double now, double then) {
        return now > then * kReplanRatio || now < then / kReplanRatio;
      };
      const bool moved =
          moved_from(rate, planned_rate) || moved_from(learned.fixed_ms(), planned_fixed);
      const double spent = std::max(ms_since(t_start), measured_ms);
      const bool affordable = report.replans < kFreeReplans || replan_ms <= kReplanShare * spent;
      const bool probed = probing && t && profile.gflops.count(key);
      if (probed) probing = false;
      if (more && (probed || ((over || next_over || under) && moved && affordable))) {
        const Clock::time_point t_plan = Clock::now();
        Policy again = policy;
        if (state.s.rows > 0)  // stay within the state already allocated
          again.workspace_limit_bytes =
              std::min(policy.workspace_limit_bytes, state.s.rows * state_row_bytes(shape));
        // The fixed cost this run measures is this run's (a busy machine),
        // so it shapes the re-plan without entering the device profile.
        DeviceProfile now = profile;
        now.dispatch_overhead_ms = learned.fixed_ms();
        const RateTrust trust = probed ? RateTrust::probed : RateTrust::profile;
        Plan rest = by_head ? plan_by_kv_head(p, now, again, head, cur, kOp, trust)
                            : make_plan(p, now, again, cur, kOp, trust);
        if (rest.workspace_bytes > 0 && state.s.rows == 0)
          state.s = be.alloc_state(shape, rest.query_rows);
        todo.erase(todo.begin() + static_cast<std::ptrdiff_t>(next), todo.end());
        todo.insert(todo.end(), rest.submissions.begin(), rest.submissions.end());
        // The budget warning is said once: by the first plan, or else by
        // the first re-plan that could not keep the budget, if the run then
        // really missed it (a re-plan can follow a rate measured during a
        // passing stall).
        if (!rest.budget_kept && !budget_warned && replan_warning.empty())
          replan_warning = rest.warnings;
        planned_rate = rate;
        planned_fixed = learned.fixed_ms();
        ++report.replans;
        replan_ms += ms_since(t_plan);
      }

      // After the last submission there is nothing left to cancel: the
      // callback still hears of it (a progress bar reaches 100%), but its
      // answer no longer throws away a finished result.
      if (progress && !progress(next, todo.size(), report) && next < todo.size())
        throw Cancelled("[longattn::attention] cancelled by the progress callback", RunReport{});
    }
  } catch (const std::exception& e) {
    // Whatever stopped the run, the work already submitted is waited for
    // (its rows are final only then), and the report says what ran.
    std::vector<double> late;
    try {
      late = be.finish();
    } catch (const std::exception&) {
      // The backend is broken: the error being raised already says so.
    }
    close_report(report, std::move(plan), std::move(done), pending, late, replan_warning, t_start,
                 false);
    const std::size_t planned = todo.size();
    if (const auto* err = dynamic_cast<const Error*>(&e))
      rethrow_with_report(*err, std::move(report), next, planned);
    if (dynamic_cast<const std::bad_alloc*>(&e))
      rethrow_with_report(OutOfMemory("[longattn::attention] out of host memory"),
                          std::move(report), next, planned);
    throw;  // not ours (a progress callback's own exception): passed on as it is
  }
  close_report(report, std::move(plan), std::move(done), pending, be.finish(), replan_warning,
               t_start, true);
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
