// The first submission keeps the budget too (issue 12). A rate the profile
// has not measured is a guess, so the planner starts such a plan with a
// probe that stays within budget * safety even at a rate
// core::kRatePessimism times slower than the guess, and the executor
// re-plans the rest from its measurement (planner.hpp, executor.cpp). Three
// layers, from exact to real:
//  - plan shapes, no timing: the probe's predicted size under the guess, the
//    quarter-size submission after it, tiny calls still one single pass, no
//    probe without a budget or with a measured rate;
//  - the executor on a model of time (model_backend.hpp): guesses from 30x
//    too slow to 32x too fast, the H200's masked call, a probe that runs
//    faster than the work after it, a probe timed only at finish(): every
//    submission within 1.1 x budget, and the rate learned into the profile;
//  - the CPU backend, timed for real: mask kinds x head dims x budgets, each
//    with a fresh profile (the default guess, and one 20x too fast), every
//    submission's measured time within 1.1 x budget and sampled output rows
//    equal to the float64 reference. Machines are shared: a miss that no
//    stall of the machine explains fails at once; one that coincides with a
//    stall (time the threads spent waiting for a CPU or stolen by the
//    hypervisor, or a submission that ran slower than the rest of its run)
//    runs the case once more, and if that run stalls too the case is
//    inconclusive. More than half the matrix inconclusive fails as well.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/executor.hpp"
#include "core/planner.hpp"
#include "core/problem.hpp"
#include "model_backend.hpp"
#include "plan_invariants.hpp"
#include "support.hpp"

namespace {

using namespace longattn;
using core::kRatePessimism;

// Issue 12's goal: every submission within this much of the budget.
constexpr double kBudgetSlack = 1.1;

// ---- problems ---------------------------------------------------------------

enum class Kind { none, boolean, additive, causal, window };
const Kind kKinds[] = {Kind::none, Kind::boolean, Kind::additive, Kind::causal, Kind::window};

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::none:
      return "no mask";
    case Kind::boolean:
      return "bool mask";
    case Kind::additive:
      return "additive mask";
    case Kind::causal:
      return "causal";
    case Kind::window:
      return "sliding window";
  }
  return "?";
}

// The sliding window of these tests: 512 keys up to the diagonal (Mistral's
// shape, smaller).
constexpr std::int64_t kWindowLeft = 511, kWindowRight = 0;

struct Shape {
  std::int64_t B = 1, Hq = 8, Hkv = 2, Lq = 0, Lk = 0, D = 64;
  Kind kind = Kind::none;
  DType dtype = DType::float32;
};

void set_kind(AttentionOptions& o, Kind kind) {
  o.causal = kind == Kind::causal;
  if (kind == Kind::window) o.window_left = kWindowLeft, o.window_right = kWindowRight;
}

// The validated problem of a shape, from null views (planning reads no data).
// Masks are [1, 1, Lq, Lk], as in the H200 report.
core::Problem problem(const Shape& s) {
  const TensorView q = contiguous(nullptr, s.dtype, {s.B, s.Hq, s.Lq, s.D});
  const TensorView k = contiguous(nullptr, s.dtype, {s.B, s.Hkv, s.Lk, s.D});
  const TensorView out = contiguous(nullptr, s.dtype, {s.B, s.Hq, s.Lq, s.D});
  AttentionOptions o;
  set_kind(o, s.kind);
  if (s.kind == Kind::boolean || s.kind == Kind::additive)
    o.mask =
        contiguous(nullptr, s.kind == Kind::boolean ? DType::boolean : s.dtype, {1, 1, s.Lq, s.Lk});
  return core::validate_attention(q, k, k, out, o, "test", false);
}

// A profile with no rate for any key: every plan from it starts from a guess.
DeviceProfile fresh(BackendKind backend, double default_gflops = 0) {
  DeviceProfile prof = default_profile(backend);
  prof.gflops.clear();
  prof.samples = 0;
  if (default_gflops > 0) prof.default_gflops = default_gflops;
  return prof;
}

Policy budget(double ms) {
  Policy pol;
  pol.budget_ms = ms;
  return pol;
}

// The fixed costs of a submission of `s` in the profile's terms.
double fixed_ms(const DeviceProfile& prof, const Submission& s) {
  return prof.submission_overhead_ms +
         prof.dispatch_overhead_ms * static_cast<double>(s.dispatches.size());
}

// ---- plan shapes (no timing) -----------------------------------------------

TEST(FirstSubmissionPlan, AGuessedRateStartsWithAProbeThatFitsThePessimisticRate) {
  // The CPU's and the CUDA backend's starting profiles, each kind of mask,
  // head dims and budgets: the first submission's work, kRatePessimism times
  // slower than the guess, plus its fixed costs, fits budget * safety; it is
  // not a sliver (where that limit leaves room for it, its work is at least
  // 4x a dispatch's fixed cost, the planner's amortized floor); the next is
  // planned to a quarter of the target, the rest to the target. The plan is
  // still a valid plan.
  int probes = 0;
  for (BackendKind backend : {BackendKind::cpu, BackendKind::cuda})
    for (Kind kind : kKinds)
      for (std::int64_t D : {32, 64, 72, 128})
        for (double ms : {5.0, 10.0, 30.0, 100.0}) {
          const bool gpu = backend == BackendKind::cuda;
          Shape s;
          s.Lq = s.Lk = gpu ? 65536 : 4096;
          s.Hq = gpu ? 32 : 8;
          s.D = D;
          s.kind = kind;
          s.dtype = gpu ? DType::bfloat16 : DType::float32;
          const core::Problem p = problem(s);
          const DeviceProfile prof = fresh(backend);
          const Policy pol = budget(ms);
          const double target = ms * pol.safety;
          const Plan plan = core::make_plan(p, prof, pol);
          const std::string what = std::string(backend_name(backend)) + " " + kind_name(kind) +
                                   " D=" + std::to_string(D) + " budget " + std::to_string(ms) +
                                   " ms: " + plan.reason;
          // A single pass (a window over few keys on the GPU) is its own
          // probe: the same rule holds.
          const Submission& probe = plan.submissions[0];
          const double work = probe.predicted_ms - fixed_ms(prof, probe);
          EXPECT_LE(fixed_ms(prof, probe) + kRatePessimism * work, target * (1 + 1e-9)) << what;
          if (!plan.chunked) continue;
          ++probes;
          ASSERT_GE(plan.submissions.size(), 2u) << what;
          EXPECT_NE(plan.reason.find("probe"), std::string::npos) << what;
          const double one = prof.submission_overhead_ms + prof.dispatch_overhead_ms;
          if ((target - one) / kRatePessimism >= 2 * 4 * prof.dispatch_overhead_ms) {
            EXPECT_GE(work, 4 * prof.dispatch_overhead_ms) << what;
          }
          double flops = 0;
          for (const Dispatch& d : probe.dispatches) flops += d.flops;
          EXPECT_GT(flops, 0) << what << ": a probe must measure something";
          EXPECT_LE(plan.submissions[1].predicted_ms, target / 4 * (1 + 1e-9)) << what;
          for (const Submission& sub : plan.submissions)
            ASSERT_LE(sub.predicted_ms, target * (1 + 1e-9)) << what;
          if (kind != Kind::window) {  // plan_invariants.hpp knows causal, not windows
            const plantest::Shape shape{s.B, s.Hq, s.Lq, s.Lk, s.D, s.D, kind == Kind::causal};
            EXPECT_EQ(plantest::check_plan(shape, plan, pol, prof.key_tile), "") << what;
          }
        }
  EXPECT_GT(probes, 2 * 5 * 4 * 4 * 9 / 10);
}

TEST(FirstSubmissionPlan, TheProbeIsSizedByItsDispatchesNotOnlyByPacking) {
  // The old margin planned the first submission to a quarter of the target
  // but left its one dispatch at the full target: with a guess 11x too fast
  // (an H200's masked kernel), 883 ms at a 100 ms budget. Every dispatch of
  // the probe is itself within the probe's limit.
  Shape s;
  s.B = 1, s.Hq = 32, s.Hkv = 8, s.Lq = s.Lk = 65536, s.D = 64, s.kind = Kind::additive;
  s.dtype = DType::bfloat16;
  const DeviceProfile prof = fresh(BackendKind::cuda);
  for (double ms : {5.0, 20.0, 100.0}) {
    const Policy pol = budget(ms);
    const Plan plan = core::make_plan(problem(s), prof, pol);
    ASSERT_TRUE(plan.chunked);
    const double fixed = prof.submission_overhead_ms + prof.dispatch_overhead_ms;
    const double limit = fixed + (ms * pol.safety - fixed) / kRatePessimism;
    for (const Dispatch& d : plan.submissions[0].dispatches)
      EXPECT_LE(d.predicted_ms, limit) << ms << " ms";
    // Predicted at the guess; 11.5x slower (26 of the guessed 300 TFLOP/s)
    // it still fits the budget.
    EXPECT_LE(fixed + 11.5 * (plan.submissions[0].predicted_ms - fixed), ms) << ms << " ms";
  }
}

TEST(FirstSubmissionPlan, ObviouslyTinyCallsStayOneSinglePass) {
  // Predicted within budget * safety even kRatePessimism times slower than
  // the guess: one single-pass dispatch, no running state, as before. A
  // call that fits the target only at the guess itself gets a probe; with
  // its rate measured, the same call is one single pass again.
  const DeviceProfile prof = fresh(BackendKind::cpu, 100);
  const Policy pol = budget(20);  // target 16 ms
  Shape s;
  s.Hq = 4, s.Hkv = 4, s.D = 64;
  s.Lq = s.Lk = 128;  // 2 * 4 * (64 + 64) * 128 * 128 = 17 MFLOP: 0.17 ms, x32 = 5.4 ms
  const Plan tiny = core::make_plan(problem(s), prof, pol);
  EXPECT_FALSE(tiny.chunked) << tiny.reason;
  EXPECT_EQ(tiny.num_dispatches(), 1u);
  EXPECT_EQ(tiny.workspace_bytes, 0);
  EXPECT_TRUE(core::enqueueable(tiny, pol));

  s.Lq = s.Lk = 512;  // 268 MFLOP: 2.7 ms at the guess, 86 ms x32
  const core::Problem mid = problem(s);
  const Plan probed = core::make_plan(mid, prof, pol);
  EXPECT_TRUE(probed.chunked) << probed.reason;
  EXPECT_NE(probed.reason.find("is a guess"), std::string::npos) << probed.reason;
  DeviceProfile measured = prof;
  measured.gflops[core::rate_key(mid)] = 100;
  const Plan single = core::make_plan(mid, measured, pol);
  EXPECT_FALSE(single.chunked) << single.reason;
  EXPECT_EQ(single.workspace_bytes, 0);
}

TEST(FirstSubmissionPlan, NoBudgetNoProbe) {
  Shape s;
  s.Lq = s.Lk = 8192, s.kind = Kind::additive;
  Policy pol = budget(0);
  const Plan plan = core::make_plan(problem(s), fresh(BackendKind::cpu), pol);
  EXPECT_FALSE(plan.chunked) << plan.reason;
  EXPECT_EQ(plan.num_dispatches(), 1u);
}

TEST(FirstSubmissionPlan, AMeasuredRateNeedsNoProbe) {
  Shape s;
  s.Lq = s.Lk = 4096, s.D = 128;
  const core::Problem p = problem(s);
  DeviceProfile prof = fresh(BackendKind::cpu);
  prof.gflops[core::rate_key(p)] = 60;
  const Policy pol = budget(30);
  const Plan plan = core::make_plan(p, prof, pol);
  ASSERT_TRUE(plan.chunked);
  EXPECT_EQ(plan.reason.find("probe"), std::string::npos) << plan.reason;
  // Full-size submissions from the first on (up to what the last dispatch
  // of a group leaves).
  EXPECT_GT(plan.submissions[0].predicted_ms, 0.5 * 30 * pol.safety);
}

TEST(FirstSubmissionPlan, TheReplanAfterTheProbeStartsAtAQuarter) {
  // RateTrust::probed (the executor's re-plan after the probe), from a live
  // group: the first submission of the re-plan, dispatches and all, within a
  // quarter of the target; the rest full size.
  Shape s;
  s.Lq = 1024, s.Lk = 65536, s.D = 128, s.kind = Kind::boolean;
  const core::Problem p = problem(s);
  DeviceProfile prof = fresh(BackendKind::cpu);
  prof.gflops[core::rate_key(p)] = 60;
  const Policy pol = budget(30);
  const double target = 30 * pol.safety;
  const Plan first = core::make_plan(p, prof, pol);
  const Dispatch& d0 = first.submissions[0].dispatches[0];
  ASSERT_EQ(d0.mode, Mode::init) << "the case needs a live group to continue";
  const core::Cursor from{d0.rect.q0, d0.rect.q1 - d0.rect.q0, d0.rect.k1};
  const Plan rest = core::make_plan(p, prof, pol, from, "test", core::RateTrust::probed);
  ASSERT_GE(rest.submissions.size(), 3u);
  EXPECT_LE(rest.submissions[0].predicted_ms, target / 4 * (1 + 1e-9));
  EXPECT_GT(rest.submissions[0].predicted_ms, target / 8);
  EXPECT_GT(rest.submissions[1].predicted_ms, target / 2);
  const Rect& r = rest.submissions[0].dispatches[0].rect;
  EXPECT_EQ(r.q0, from.q_begin);
  EXPECT_EQ(r.k0, from.k_next);
}

// ---- the executor on a model of time ---------------------------------------

struct ModelResult {
  RunReport report;
  DeviceProfile profile;
};

ModelResult run_model(plantest::ModelBackend& be, const core::Problem& p, DeviceProfile prof,
                      double budget_ms) {
  ModelResult r;
  r.profile = std::move(prof);
  const Policy pol = budget(budget_ms);
  r.report = core::execute(p, be, r.profile, pol, {}, core::make_plan(p, r.profile, pol));
  return r;
}

// "" when every submission of the report is within kBudgetSlack x budget.
std::string misses(const RunReport& rep) {
  std::ostringstream s;
  for (std::size_t i = 0; i < rep.submissions.size(); ++i)
    if (rep.submissions[i].measured_ms > kBudgetSlack * rep.budget_ms)
      s << " submission " << i << " of " << rep.submissions.size() << ": "
        << rep.submissions[i].measured_ms << " ms (predicted " << rep.submissions[i].predicted_ms
        << ");";
  return s.str();
}

TEST(FirstSubmissionModel, EveryGuessWithinThePessimismKeepsTheBudget) {
  // A device that runs at 60 GFLOP/s, a profile guessing from 30x too slow
  // to 32x too fast. Every submission within 1.1 x budget, the first
  // included; the profile learns the rate; learning costs some extra
  // submissions over a run whose rate was known (a re-plan waits until the
  // rate has moved by kReplanRatio, 1.25, so up to about that many more).
  Shape s;
  s.Hq = 32, s.Hkv = 8, s.Lq = s.Lk = 4096, s.D = 128, s.kind = Kind::causal;
  const core::Problem p = problem(s);
  const std::string key = core::rate_key(p);
  for (double ms : {5.0, 20.0, 100.0}) {
    plantest::ModelBackend known_be;
    DeviceProfile known = fresh(BackendKind::cpu);
    known.gflops[key] = 60;
    const ModelResult k = run_model(known_be, p, known, ms);
    for (double guess : {2.0, 60.0, 240.0, 690.0, 1080.0, 1920.0}) {
      plantest::ModelBackend be;
      const ModelResult r = run_model(be, p, fresh(BackendKind::cpu, guess), ms);
      const std::string what =
          "budget " + std::to_string(ms) + " ms, guess " + std::to_string(guess) + " GFLOP/s";
      ASSERT_TRUE(r.report.completed) << what;
      EXPECT_EQ(misses(r.report), "") << what;
      ASSERT_TRUE(r.profile.gflops.count(key)) << what << ": the rate was not recorded";
      EXPECT_NEAR(r.profile.gflops.at(key), 60, 6) << what;
      EXPECT_LE(r.report.submissions.size(), k.report.submissions.size() * 3 / 2 + 4) << what;
    }
  }
}

TEST(FirstSubmissionModel, TheH200MaskedCallKeepsTheBudget) {
  // The call of issue 12's report: bf16, B 1, 32 heads, 64K x 64K, D 64,
  // an additive [1, 1, L, L] mask, the CUDA starting profile (it guesses 300
  // TFLOP/s), a device that runs masked attention at 26. Measured on the
  // H200 before the probe: 883, 159 and 40 ms first submissions at budgets
  // of 100, 20 and 5 ms.
  Shape s;
  s.Hq = 32, s.Hkv = 8, s.Lq = s.Lk = 65536, s.D = 64, s.kind = Kind::additive;
  s.dtype = DType::bfloat16;
  const core::Problem p = problem(s);
  for (double ms : {5.0, 20.0, 100.0}) {
    plantest::ModelBackend be;
    be.gflops = 26000;
    be.dispatch_ms = 0.01, be.submission_ms = 0.02;
    const ModelResult r = run_model(be, p, fresh(BackendKind::cuda), ms);
    ASSERT_TRUE(r.report.completed);
    EXPECT_EQ(misses(r.report), "") << ms << " ms";
    EXPECT_LE(r.report.submissions[0].measured_ms, ms) << ms << " ms";
    EXPECT_NEAR(r.profile.gflops.at(core::rate_key(p)), 26000, 2600) << ms << " ms";
    std::printf("budget %g ms: first submission %.2f ms, worst after it %.2f ms, %zu submissions\n",
                ms, r.report.submissions[0].measured_ms,
                std::max_element(r.report.submissions.begin() + 1, r.report.submissions.end(),
                                 [](const SubmissionReport& a, const SubmissionReport& b) {
                                   return a.measured_ms < b.measured_ms;
                                 })
                    ->measured_ms,
                r.report.submissions.size());
  }
}

TEST(FirstSubmissionModel, AProbeFasterThanTheWorkAfterItStillKeepsTheBudget) {
  // The probe's few keys can run faster than what follows (a warm cache, a
  // lighter corner of a mask): here the first submission's dispatches run
  // 3x faster than the rest. The next submission, a quarter of the target,
  // shows the truth, and the rest is re-planned from it before anything
  // full size runs.
  Shape s;
  s.Hq = 32, s.Hkv = 8, s.Lq = s.Lk = 4096, s.D = 128;
  const core::Problem p = problem(s);
  for (double ms : {5.0, 20.0, 100.0}) {
    DeviceProfile prof = fresh(BackendKind::cpu, 60);
    const Policy pol = budget(ms);
    const Plan plan = core::make_plan(p, prof, pol);
    const auto probe_dispatches = static_cast<long>(plan.submissions[0].dispatches.size());
    plantest::ModelBackend be;
    // The backend counts a dispatch before it asks its rate.
    be.rate_of = [&](const Dispatch&) { return be.dispatches <= probe_dispatches ? 180.0 : 60.0; };
    const RunReport rep = core::execute(p, be, prof, pol, {}, plan);
    ASSERT_TRUE(rep.completed);
    EXPECT_EQ(misses(rep), "") << ms << " ms";
    EXPECT_NEAR(prof.gflops.at(core::rate_key(p)), 60, 6) << ms << " ms";
  }
}

TEST(FirstSubmissionModel, AProbeTimedOnlyAtTheEndIsWaitedFor) {
  // Without a host wait at each submission (CUDA's host_wait = false) the
  // times come at finish(): the executor waits once, for the probe, and
  // plans the rest from it.
  Shape s;
  s.Hq = 32, s.Hkv = 8, s.Lq = s.Lk = 4096, s.D = 128, s.kind = Kind::boolean;
  const core::Problem p = problem(s);
  plantest::ModelBackend be;
  be.timed_at_finish = true;
  const ModelResult r = run_model(be, p, fresh(BackendKind::cpu, 1920), 20);
  ASSERT_TRUE(r.report.completed);
  EXPECT_EQ(be.finishes, 2) << "one wait for the probe, one at the end";
  EXPECT_EQ(misses(r.report), "");
  for (const SubmissionReport& sub : r.report.submissions) EXPECT_GT(sub.measured_ms, 0);
  EXPECT_GE(r.report.replans, 1);
}

TEST(FirstSubmissionModel, TheLearnedRateIsKeptAndTheNextCallPlansAtOnce) {
  // Through attention()'s path: the call's measurements are replayed onto
  // the caller's profile (refine_profile), which then holds the key, so the
  // next call of that kind needs no probe.
  Shape s;
  s.Hq = 32, s.Hkv = 8, s.Lq = s.Lk = 4096, s.D = 64, s.kind = Kind::additive;
  const core::Problem p = problem(s);
  const DeviceProfile start = fresh(BackendKind::cpu, 1920);
  DeviceProfile local = start, callers = start;
  plantest::ModelBackend be;
  const Policy pol = budget(20);
  std::vector<core::Observation> observed;
  const RunReport rep =
      core::execute(p, be, local, pol, {}, core::make_plan(p, local, pol), &observed);
  ASSERT_TRUE(rep.completed);
  for (const core::Observation& o : observed) core::refine_profile(callers, o);
  const std::string key = core::rate_key(p);
  ASSERT_TRUE(callers.gflops.count(key));
  EXPECT_NEAR(callers.gflops.at(key), 60, 6);
  const Plan next = core::make_plan(p, callers, pol);
  EXPECT_EQ(next.reason.find("probe"), std::string::npos) << next.reason;
  EXPECT_GT(next.submissions[0].predicted_ms, 0.5 * 20 * pol.safety);
}

TEST(FirstSubmissionModel, AFirstMeasurementReplacesAGuessWhole) {
  // refine_profile: a guess (no rate for the key) is replaced by the first
  // measurement, however far off it was; early samples slower than the
  // rate believed are taken whole, faster ones half the way.
  DeviceProfile prof = fresh(BackendKind::cpu, 300000);
  const std::string key = "bfloat16/d64/masked";
  core::Observation o{key, 26e9, 1.02, 0.02};  // 26 GFLOP in 1 ms of compute
  o.early = true;
  core::refine_profile(prof, o);
  EXPECT_NEAR(prof.gflops.at(key), 26000, 1);
  core::refine_profile(prof, {key, 13e9, 1.02, 0.02, 0, true});  // 13 TFLOP/s
  EXPECT_NEAR(prof.gflops.at(key), 13000, 1);
  core::refine_profile(prof, {key, 52e9, 1.02, 0.02, 0, true});  // 4x faster: half the way
  EXPECT_NEAR(prof.gflops.at(key), 26000, 1);
}

// ---- the CPU backend, timed for real ---------------------------------------

// What this process may have lost to other work since some earlier call, in
// ms: the time its threads spent waiting for a CPU (the scheduler's run
// queue delay, /proc/self/task/*/schedstat) plus the time the hypervisor
// stole from the machine's CPUs (/proc/stat). Zero where neither is readable.
double stalled_ms() {
  double ns = 0;
  std::error_code ec;
  for (const auto& t : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    std::ifstream f(t.path() / "schedstat");
    double on_cpu = 0, waiting = 0;
    if (f >> on_cpu >> waiting) ns += waiting;
  }
  double steal_ticks = 0;
  std::ifstream stat("/proc/stat");
  std::string cpu;
  double field[8] = {};
  if (stat >> cpu && cpu == "cpu") {
    for (double& x : field) stat >> x;
    steal_ticks = field[7];  // user nice system idle iowait irq softirq steal
  }
  return ns / 1e6 + steal_ticks * 1000.0 / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// The shapes of the timed matrix: about 17 GFLOP at D = 128 (around 100 ms
// on two cores), so that a 10 ms budget takes a dozen submissions and a 30
// ms one a few: the probe, the quarter after it, and full-size ones.
lt::Case timed_case(Kind kind, std::int64_t D) {
  lt::Case c;
  c.B = 1, c.Hq = 8, c.Hkv = 2, c.D = D;
  c.Lq = c.Lk = kind == Kind::window ? 8192 : kind == Kind::causal ? 3072 : 2048;
  if (lt::small_tests()) c.Lq /= 4;  // sanitizer builds
  c.causal = kind == Kind::causal;
  if (kind == Kind::window) c.window_left = kWindowLeft, c.window_right = kWindowRight;
  if (kind == Kind::boolean) c.mask = lt::MaskKind::boolean;
  if (kind == Kind::additive) c.mask = lt::MaskKind::additive;
  c.mask_broadcast = {true, true, false, false};  // [1, 1, Lq, Lk]
  c.lse = true;
  c.seed = 1200 + static_cast<std::uint64_t>(kind) * 1000 + static_cast<std::uint64_t>(D);
  return c;
}

// Sampled output rows (every batch and head) against the float64 reference:
// the first rows (the probe's), the last, and rows spread between. "" when
// they match within the table's tolerance.
std::string compare_rows(lt::CaseData& d) {
  const lt::Case& c = d.c;
  std::vector<std::int64_t> rows = {0, 1, 47, 48, 63, 64, c.Lq - 1};
  for (std::int64_t i = 1; i < 24; ++i) rows.push_back(c.Lq * i / 24 + i % 7);
  std::sort(rows.begin(), rows.end());
  rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
  rows.erase(std::remove_if(rows.begin(), rows.end(), [&](std::int64_t i) { return i >= c.Lq; }),
             rows.end());
  const std::int64_t dv = c.dv();
  const std::vector<double> out = d.out.read(), lse = d.lse.read();
  std::vector<double> got_o, want_o, got_lse, want_lse;
  std::vector<double> o(static_cast<std::size_t>(dv));
  for (std::int64_t b = 0; b < c.B; ++b)
    for (std::int64_t h = 0; h < c.Hq; ++h)
      for (std::int64_t i : rows) {
        double l = 0;
        ref::attention_row(d.in, b, h, i, o.data(), &l);
        const std::int64_t r = (b * c.Hq + h) * c.Lq + i;
        want_o.insert(want_o.end(), o.begin(), o.end());
        got_o.insert(got_o.end(), out.begin() + r * dv, out.begin() + (r + 1) * dv);
        want_lse.push_back(l);
        got_lse.push_back(lse[static_cast<std::size_t>(r)]);
      }
  const ref::Metric mo = ref::metric(got_o, want_o, dv), ml = ref::lse_metric(got_lse, want_lse);
  const double tol = lt::tolerance(c.dtype, c.Lk);
  if (mo.err <= tol && ml.err <= ref::lse_tolerance()) return "";
  std::ostringstream s;
  s << "output error " << mo.err << " (tolerance " << tol << "), LSE error " << ml.err
    << " (tolerance " << ref::lse_tolerance() << ")";
  return s.str();
}

struct TimedRun {
  RunReport report;
  std::vector<double> stalled;  // ms lost to other work during each submission
  std::string misses;           // the submissions over kBudgetSlack x budget, with their stalls
  // Every miss coincides with a stall of the machine: its threads waited for
  // a CPU long enough to explain it, or the machine ran that submission
  // slower than the rest of the run (at the run's median rate it would have
  // been within the slack), or the run had stalls and the executor, taking
  // them for a fixed cost per dispatch, said the budget cannot be kept
  // (cost_fit.hpp: it then plans larger dispatches on purpose; under the
  // sanitizers, whose fixed costs are real, that alone explains a miss). A
  // planner that sized a submission wrong misses at the run's own speed, so
  // its miss is not explained.
  bool explained = true;
};

TimedRun run_timed(lt::CaseData& d, DeviceProfile& prof, double budget_ms) {
  TimedRun r;
  d.reset_outputs();
  AttentionOptions o;
  o.policy = budget(budget_ms);
  o.profile = &prof;
  o.report = &r.report;
  double last = stalled_ms();
  o.progress = [&](std::size_t, std::size_t, const RunReport&) {
    const double now = stalled_ms();
    r.stalled.push_back(now - last);
    last = now;
    return true;
  };
  lt::run(d, o);
  const std::vector<SubmissionReport>& subs = r.report.submissions;
  const double limit = kBudgetSlack * budget_ms;
  double stalls = 0;
  for (double x : r.stalled) stalls += x;
  bool given_up = false;
  for (const std::string& w : r.report.warnings)
    given_up = given_up || w.find("cannot be kept") != std::string::npos;
  std::ostringstream s;
  if (given_up)
    s << " (the run waited " << stalls
      << " ms for a CPU in all and said: " << r.report.warnings.front() << ")";
  for (std::size_t i = 0; i < subs.size(); ++i) {
    const double t = subs[i].measured_ms;
    if (t <= limit) continue;
    // The run's usual speed: the median rate of its other submissions of a
    // quarter of the budget or more (smaller ones are mostly fixed cost).
    std::vector<double> rates;
    for (std::size_t j = 0; j < subs.size(); ++j)
      if (j != i && subs[j].measured_ms >= budget_ms / 4)
        rates.push_back(subs[j].flops / subs[j].measured_ms);
    std::sort(rates.begin(), rates.end());
    const double usual_ms = rates.size() >= 2 ? subs[i].flops / rates[rates.size() / 2] : t;
    const double lost = i < r.stalled.size() ? r.stalled[i] : 0;
    s << " submission " << i << " of " << subs.size() << " took " << t << " ms (predicted "
      << subs[i].predicted_ms << "; its threads waited " << lost << " ms for a CPU; at the run's "
      << "median rate it would have taken " << usual_ms << " ms);";
    if (t - lost > limit && usual_ms > limit &&
        !(given_up && (stalls > budget_ms || lt::small_tests())))
      r.explained = false;
  }
  r.misses = s.str();
  return r;
}

TEST(FirstSubmissionCpu, EverySubmissionWithinBudgetWithAFreshProfile) {
  // Mask kinds x head dims x budgets, each run on a fresh profile: the CPU's
  // starting guess, then one 20x faster than the rate that first run
  // measured (the H200's masked kernels ran 11.5x below the CUDA guess, 18x
  // below the same shape unmasked).
  constexpr double kOptimism = 20;
  std::string cpu;
  std::printf("%-15s %4s %6s %-10s %5s %9s %9s %9s\n", "case", "D", "budget", "profile", "subs",
              "first ms", "worst ms", "GFLOP/s");
  int cases = 0, retried = 0, inconclusive = 0;
  for (Kind kind : kKinds)
    for (std::int64_t D : {32, 64, 72, 128}) {
      lt::CaseData d(timed_case(kind, D));
      for (double ms : {10.0, 30.0}) {
        double learned = 0;
        for (const char* start : {"default", "optimistic"}) {
          const bool optimistic = std::string(start) == "optimistic";
          const std::string what = std::string(kind_name(kind)) + ", D " + std::to_string(D) +
                                   ", budget " + std::to_string(static_cast<int>(ms)) + " ms, " +
                                   start + " profile";
          // A miss that a stall explains is retried once; if the retry is
          // stalled too, the case says nothing either way (inconclusive).
          // A miss no stall explains fails at once.
          TimedRun r;
          DeviceProfile prof;
          ++cases;
          for (int attempt = 0; attempt < 2; ++attempt) {
            prof = fresh(BackendKind::cpu, optimistic ? kOptimism * learned : 0);
            r = run_timed(d, prof, ms);
            if (r.misses.empty() || !r.explained) break;
            std::printf("%s: %s, every miss coincided with a stall:%s\n", what.c_str(),
                        attempt == 0 ? "retrying" : "inconclusive", r.misses.c_str());
            ++(attempt == 0 ? retried : inconclusive);
          }
          ASSERT_TRUE(r.report.completed) << what;
          cpu = prof.device_name;
          const std::string key = DeviceProfile::rate_key(DType::float32, D, kind == Kind::causal,
                                                          d.c.mask != lt::MaskKind::none);
          ASSERT_TRUE(prof.gflops.count(key)) << what << ": the rate was not recorded";
          if (!optimistic) learned = prof.gflops.at(key);
          EXPECT_TRUE(r.misses.empty() || r.explained)
              << what << ": over " << kBudgetSlack << " x budget, not explained by a stall of "
              << "the machine:" << r.misses << " [first plan: " << r.report.plan.reason << "]";
          const std::string wrong = compare_rows(d);
          EXPECT_EQ(wrong, "") << what;
          double worst = 0;
          for (const auto& sub : r.report.submissions) worst = std::max(worst, sub.measured_ms);
          std::printf("%-15s %4lld %6.0f %-10s %5zu %9.2f %9.2f %9.1f\n", kind_name(kind),
                      static_cast<long long>(D), ms, start, r.report.submissions.size(),
                      r.report.submissions[0].measured_ms, worst,
                      r.report.total_flops / (r.report.total_ms * 1e6));
        }
      }
    }
  std::printf("%d cases, %d retried after a stall, %d inconclusive; CPU: %s\n", cases, retried,
              inconclusive, cpu.c_str());
  // A machine too busy to judge most of the matrix is a failure too, not a
  // pass. (A quarter of the cases were inconclusive next to a process that
  // kept one of the two cores busy.)
  EXPECT_LE(inconclusive, cases / 2)
      << "the machine was too busy to judge the budget: in " << inconclusive << " of " << cases
      << " cases, a miss coincided with a stall twice";
}

}  // namespace
