// The executor: run reports, re-planning after an overshoot, cancellation,
// the untimed (enqueue) path, and device profiles saved and loaded.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "core/backend.hpp"
#include "core/executor.hpp"
#include "core/planner.hpp"
#include "core/problem.hpp"
#include "support.hpp"

namespace {

using namespace longattn;

lt::Case medium_case() {
  lt::Case c;
  c.B = 1;
  c.Hq = 4;
  c.Hkv = 2;
  c.Lq = lt::small_tests() ? 96 : 300;
  c.Lk = lt::small_tests() ? 200 : 900;
  c.D = 64;
  c.causal = true;
  c.sinks = true;
  c.seed = 7;
  return c;
}

TEST(Executor, ReportAddsUpAndMatchesThePlan) {
  lt::CaseData d(medium_case());
  RunReport rep;
  AttentionOptions o;
  o.policy = lt::chunked_policy(64);
  o.report = &rep;
  lt::run(d, o);
  const lt::Comparison r = lt::compare(d);
  EXPECT_TRUE(r.ok) << r.message;
  ASSERT_TRUE(rep.completed);
  EXPECT_EQ(rep.backend, "cpu");
  EXPECT_EQ(rep.submissions.size(), rep.plan.submissions.size());
  double flops = 0, measured_ms = 0;
  std::size_t dispatches = 0;
  for (const auto& s : rep.submissions) {
    flops += s.flops;
    dispatches += s.dispatches;
    measured_ms += s.measured_ms;
    // The CPU backend times each submission by the host clock; each one did work.
    EXPECT_GT(s.flops, 0);
    EXPECT_GT(s.measured_ms, 0);
  }
  EXPECT_EQ(dispatches, rep.plan.num_dispatches());
  // total_ms is the sum of the submissions' times, and they ran inside the
  // call, one after another, so they add up to no more than its wall time
  // (the slack covers rounding the sums, nothing else).
  EXPECT_DOUBLE_EQ(rep.total_ms, measured_ms);
  EXPECT_LE(measured_ms, rep.wall_ms + 1e-6);
  const auto& c = d.c;
  const double off = double(c.Lk - c.Lq);
  double pairs = 0;
  for (std::int64_t i = 0; i < c.Lq; ++i)
    pairs += std::clamp(double(i) + off + 1, 0.0, double(c.Lk));
  EXPECT_NEAR(flops, 4.0 * double(c.B * c.Hq * c.D) * pairs, 1e-6 * flops);
  EXPECT_NEAR(rep.total_flops, flops, 1e-9 * flops);
  ASSERT_EQ(rep.finished_rows.size(), 1u);
  EXPECT_EQ(rep.finished_rows[0], std::make_pair(std::int64_t{0}, c.Lq));
}

TEST(Executor, ReplansAfterAnOvershootAndStaysExact) {
  // A profile that believes this CPU does 1000 GFLOP/s (2 cores give
  // 10-150, less under sanitizers): the first submission, planned to a
  // quarter of the 2 ms budget, takes far longer; the executor learns the
  // rate from it, re-plans the rest, and the result is still exact.
  lt::Case c = medium_case();
  c.Lq = 512;
  c.Lk = 4096;
  lt::CaseData d(c);
  DeviceProfile prof = default_profile(BackendKind::cpu);
  prof.gflops.clear();
  prof.default_gflops = 1000;
  prof.fill_rows = 1;
  prof.submission_overhead_ms = 0.01;
  prof.dispatch_overhead_ms = 0.01;
  RunReport rep;
  AttentionOptions o;
  o.policy.budget_ms = 2;
  o.policy.chunk_threshold_keys = c.Lk / 4;  // force the chunked path, 4+ chunks per group
  o.profile = &prof;
  o.report = &rep;
  lt::run(d, o);
  const lt::Comparison r = lt::compare(d);
  EXPECT_TRUE(r.ok) << r.message;
  EXPECT_GE(rep.replans, 1);
  EXPECT_GT(rep.submissions.size(), 1u);
  EXPECT_LT(prof.rate_gflops(DeviceProfile::rate_key(c.dtype, c.D, true, false)), 500)
      << "the profile must learn the measured rate";
  EXPECT_GT(prof.samples, 0);
}

TEST(Executor, CancelStopsBetweenSubmissionsAndSaysWhatWasWritten) {
  lt::CaseData d(medium_case());
  AttentionOptions o;
  // Several chunks per group, so that the cancel lands inside a group
  // (group 0 ends in submission 2 or 3).
  o.policy = lt::chunked_policy(lt::small_tests() ? 64 : 512, 48);
  std::size_t calls = 0;
  o.progress = [&](std::size_t done, std::size_t total, const RunReport&) {
    ++calls;
    EXPECT_LE(done, total);
    return done < 3;  // stop after the third submission
  };
  RunReport rep;
  o.report = &rep;
  try {
    lt::run(d, o);
    FAIL() << "expected longattn::Cancelled";
  } catch (const Cancelled& e) {
    EXPECT_EQ(e.code(), ErrorCode::cancelled);
    EXPECT_NE(std::string(e.what()).find("cancelled"), std::string::npos);
    EXPECT_FALSE(e.report().completed);
    EXPECT_EQ(e.report().submissions.size(), 3u);
  }
  EXPECT_EQ(calls, 3u);
  EXPECT_FALSE(rep.completed);
  // Rows listed as finished are exact. Every other output row is untouched
  // (still the NaN poison the test filled it with), except, in a plan by
  // KV head, rows of the heads whose passes ran: exact too, or not written.
  const auto got = d.out.read();
  const std::int64_t group = d.c.Hq / d.c.Hkv;
  const std::int64_t stopped_in = rep.plan.submissions.back().kv_head;  // -1: all heads
  EXPECT_EQ(rep.plan.by_kv_head, stopped_in >= 0);
  const auto& want = d.expected().o;
  const auto& c = d.c;
  const std::int64_t dv = c.dv();
  auto finished = [&](std::int64_t i) {
    for (auto [a, b] : rep.finished_rows)
      if (i >= a && i < b) return true;
    return false;
  };
  std::int64_t fin = 0, untouched = 0;
  for (std::int64_t b = 0; b < c.B; ++b)
    for (std::int64_t h = 0; h < c.Hq; ++h)
      for (std::int64_t i = 0; i < c.Lq; ++i)
        for (std::int64_t x = 0; x < dv; ++x) {
          const std::size_t idx = static_cast<std::size_t>(((b * c.Hq + h) * c.Lq + i) * dv + x);
          if (finished(i)) {
            ASSERT_NEAR(got[idx], want[idx], 1e-4) << "row " << i;
            ++fin;
          } else if (std::isnan(got[idx])) {
            ++untouched;
          } else {
            ASSERT_LE(h / group, stopped_in)
                << "row " << i << " head " << h << " was written but not reported finished";
            ASSERT_NEAR(got[idx], want[idx], 1e-4) << "row " << i << " head " << h;
          }
        }
  EXPECT_GT(untouched, 0);
}

// ---- the untimed path: core::enqueueable and core::enqueue ----------------

// A backend that records what the executor asks of it and runs nothing.
class RecordingBackend final : public core::Backend {
 public:
  std::vector<std::string> calls;
  std::string name() const override { return "recording"; }
  std::string device_name() const override { return "nothing"; }
  core::StateView alloc_state(const core::Problem&, std::int64_t rows) override {
    calls.push_back("alloc_state");
    state_.assign(1, 0.f);
    return {state_.data(), state_.data(), state_.data(), 0, rows};
  }
  void release_state(core::StateView& s) noexcept override {
    calls.push_back("release_state");
    s = {};
  }
  void begin_submission() override { calls.push_back("begin"); }
  const char* dispatch(const core::Problem&, const Dispatch& d, const core::StateView&) override {
    calls.push_back(std::string("dispatch ") + mode_name(d.mode));
    return "recording";
  }
  std::optional<double> end_submission() override {
    calls.push_back("end");
    return 0.05;
  }
  std::vector<double> finish() override {
    calls.push_back("finish");
    return {};
  }

 private:
  std::vector<float> state_;
};

struct Planned {
  core::Problem p;
  Plan plan;
};

// The decode benchmark's shape family (Hq 32, Hkv 8, D 128, bfloat16),
// planned with the CUDA backend's starting profile (or `measured`, its rate
// for the shape known); data pointers are null (nothing runs).
Planned plan_for(std::int64_t Lq, std::int64_t Lk, const Policy& policy, bool measured = false) {
  const auto t = DType::bfloat16;
  const TensorView q = contiguous(nullptr, t, {1, 32, Lq, 128});
  const TensorView k = contiguous(nullptr, t, {1, 8, Lk, 128});
  const TensorView out = contiguous(nullptr, t, {1, 32, Lq, 128});
  AttentionOptions o;
  o.policy = policy;
  Planned r;
  r.p = core::validate_attention(q, k, k, out, o, "test", false);
  DeviceProfile prof = default_profile(BackendKind::cuda);
  if (measured) prof.gflops[core::rate_key(r.p)] = prof.rate_gflops(core::rate_key(r.p));
  r.plan = core::make_plan(r.p, prof, policy);
  return r;
}

TEST(ExecutorEnqueue, DecodeAndShortPrefillPlansAreEnqueueable) {
  const Policy def = AttentionOptions::default_policy();
  EXPECT_TRUE(core::enqueueable(plan_for(1, 1 << 20, def).plan, def));
  EXPECT_TRUE(core::enqueueable(plan_for(1, 4096, def).plan, def));
  EXPECT_TRUE(core::enqueueable(plan_for(512, 4096, def).plan, def));
  Policy none = def;
  none.budget_ms = 0;  // no budget: any single-pass plan
  EXPECT_TRUE(core::enqueueable(plan_for(1, 1 << 20, none).plan, none));
}

TEST(ExecutorEnqueue, TimedPlansAreNot) {
  const Policy def = AttentionOptions::default_policy();
  // Chunked: several submissions, running state.
  const Policy chunked = lt::chunked_policy(1024);
  const Planned c = plan_for(1, 8192, chunked);
  ASSERT_GT(c.plan.workspace_bytes, 0);
  EXPECT_FALSE(core::enqueueable(c.plan, chunked));
  // Single pass, one submission (the rate measured: a guess would make it
  // a probe and more), but predicted beyond a quarter of budget * safety:
  // measured, so that a rate that drifted gets corrected.
  const Planned big = plan_for(16384, 16384, def, true);
  ASSERT_EQ(big.plan.submissions.size(), 1u) << big.plan.reason;
  Policy tight = def;
  tight.budget_ms = big.plan.predicted_ms * 2;  // budget * safety / 4 < predicted
  EXPECT_FALSE(core::enqueueable(big.plan, tight));
  tight.budget_ms = big.plan.predicted_ms * 6;  // 6 * 0.8 / 4 = 1.2 x predicted
  EXPECT_TRUE(core::enqueueable(big.plan, tight));
  // Hand-made: two submissions, or one stateful dispatch.
  Plan two = plan_for(1, 4096, def).plan;
  two.submissions.push_back(two.submissions.front());
  EXPECT_FALSE(core::enqueueable(two, def));
  Plan init = plan_for(1, 4096, def).plan;
  init.submissions.front().dispatches.front().mode = Mode::init;
  EXPECT_FALSE(core::enqueueable(init, def));
}

TEST(ExecutorEnqueue, OnlyDispatchesNoSubmissionsNoWait) {
  // Three query groups of 100 rows, each a single pass: one submission.
  Policy pol = AttentionOptions::default_policy();
  pol.fixed_query_rows = 100;
  const Planned pl = plan_for(300, 2048, pol);
  ASSERT_TRUE(core::enqueueable(pl.plan, pol)) << pl.plan.reason;
  ASSERT_EQ(pl.plan.num_dispatches(), 3u);
  RecordingBackend be;
  core::enqueue(pl.p, be, pl.plan);
  const std::vector<std::string> want(3, "dispatch single_pass");
  EXPECT_EQ(be.calls, want) << "no begin/end_submission (events), no finish (wait), no state";
}

TEST(ExecutorEnqueue, RefusesAChunkedPlanBeforeLaunchingAnything) {
  const Planned c = plan_for(1, 8192, lt::chunked_policy(1024));
  RecordingBackend be;
  EXPECT_THROW(core::enqueue(c.p, be, c.plan), InvalidArgument);
  EXPECT_TRUE(be.calls.empty());
  // One submission whose second dispatch needs state: still nothing launched.
  Plan mixed = plan_for(1, 4096, AttentionOptions::default_policy()).plan;
  Dispatch fin = mixed.submissions.front().dispatches.front();
  fin.mode = Mode::finalize;
  mixed.submissions.front().dispatches.push_back(fin);
  EXPECT_THROW(core::enqueue(c.p, be, mixed), InvalidArgument);
  EXPECT_TRUE(be.calls.empty());
}

TEST(ExecutorEnqueue, TheTimedPathStillBracketsAndWaits) {
  const Policy def = AttentionOptions::default_policy();
  const Planned pl = plan_for(1, 4096, def);
  RecordingBackend be;
  DeviceProfile prof = default_profile(BackendKind::cuda);
  const RunReport r = core::execute(pl.p, be, prof, def, {}, pl.plan);
  const std::vector<std::string> want = {"begin", "dispatch single_pass", "end", "finish"};
  EXPECT_EQ(be.calls, want);
  ASSERT_EQ(r.submissions.size(), 1u);
  EXPECT_EQ(r.submissions[0].measured_ms, 0.05);
}

TEST(ExecutorEnqueue, CpuCallsStayTimed) {
  // The untimed path is for CUDA: a CPU call without a report still times
  // its submission and refines the profile (a slow single pass, so that
  // the measurement is not dismissed as overhead).
  lt::Case c = medium_case();
  c.Lq = lt::small_tests() ? 256 : 1024;
  c.Lk = lt::small_tests() ? 1024 : 4096;
  lt::CaseData d(c);
  DeviceProfile prof = default_profile(BackendKind::cpu);
  AttentionOptions o;
  o.profile = &prof;
  o.policy.budget_ms = 0;
  lt::run(d, o);
  const lt::Comparison r = lt::compare(d);
  EXPECT_TRUE(r.ok) << r.message;
  EXPECT_GT(prof.samples, 0);
}

TEST(DeviceProfileFile, SaveLoadRoundTrip) {
  DeviceProfile p;
  p.backend = "cpu";
  p.device_name = "test machine";
  p.gflops["float32/d64/causal"] = 123.5;
  p.gflops["bfloat16"] = 77;
  p.default_gflops = 42;
  p.dispatch_overhead_ms = 0.125;
  p.submission_overhead_ms = 0.25;
  p.state_gbps = 9.5;
  p.fill_rows = 384;
  p.query_tile = 96;
  p.key_tile = 64;
  p.samples = 5;
  const std::string path = ::testing::TempDir() + "/profile.json";
  p.save(path);
  const DeviceProfile q = DeviceProfile::load(path);
  EXPECT_EQ(q.backend, p.backend);
  EXPECT_EQ(q.device_name, p.device_name);
  EXPECT_EQ(q.gflops, p.gflops);
  EXPECT_EQ(q.default_gflops, p.default_gflops);
  EXPECT_EQ(q.dispatch_overhead_ms, p.dispatch_overhead_ms);
  EXPECT_EQ(q.submission_overhead_ms, p.submission_overhead_ms);
  EXPECT_EQ(q.state_gbps, p.state_gbps);
  EXPECT_EQ(q.fill_rows, p.fill_rows);
  EXPECT_EQ(q.query_tile, p.query_tile);
  EXPECT_EQ(q.key_tile, p.key_tile);
  EXPECT_EQ(q.samples, p.samples);
  // Lookup falls back from the exact key to the dtype, then the default.
  EXPECT_EQ(q.rate_gflops("float32/d64/causal"), 123.5);
  EXPECT_EQ(q.rate_gflops("bfloat16/d128/full"), 77);
  EXPECT_EQ(q.rate_gflops("float16/d128/full"), 42);
  std::remove(path.c_str());
}

TEST(DeviceProfileFile, BadFilesGiveTypedErrorsNamingThePath) {
  const std::string dir = ::testing::TempDir();
  auto expect_io = [&](const std::string& name, const std::string& text) {
    const std::string path = dir + "/" + name;
    if (!text.empty() || name != "missing.json") std::ofstream(path) << text;
    try {
      (void)DeviceProfile::load(path);
      ADD_FAILURE() << name << ": expected IoError";
    } catch (const IoError& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  };
  expect_io("missing.json", "");
  expect_io("garbage.json", "{not json");
  expect_io("wrongformat.json", R"({"format": "something-else"})");
  expect_io("truncated.json", R"({"format": "longattn-profile-1", "backend": "cpu"})");
  expect_io(
      "negative.json",
      R"({"format": "longattn-profile-1", "backend": "cpu", "gflops": {}, "default_gflops": -1,
                "dispatch_overhead_ms": 0, "submission_overhead_ms": 0, "state_gbps": 1, "fill_rows": 1})");
  EXPECT_THROW(DeviceProfile().save(dir + "/no/such/dir/p.json"), IoError);
}

TEST(Executor, ProcessProfileIsRefinedByRuns) {
  const DeviceProfile before = default_profile(BackendKind::cpu);
  lt::CaseData d(medium_case());
  AttentionOptions o;
  o.policy = lt::chunked_policy(128);
  lt::run(d, o);
  const DeviceProfile after = default_profile(BackendKind::cpu);
  EXPECT_GT(after.samples, before.samples);
}

}  // namespace
