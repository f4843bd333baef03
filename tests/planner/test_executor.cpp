// The executor: run reports, re-planning after an overshoot, cancellation,
// and device profiles saved and loaded.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>

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
  double flops = 0;
  std::size_t dispatches = 0;
  for (const auto& s : rep.submissions) {
    flops += s.flops;
    dispatches += s.dispatches;
    EXPECT_GE(s.measured_ms, 0);
  }
  EXPECT_EQ(dispatches, rep.plan.num_dispatches());
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
  // Rows listed as finished are exact; every other output row is untouched
  // (still the NaN poison the test filled it with).
  const auto got = d.out.read();
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
          } else {
            ASSERT_TRUE(std::isnan(got[idx]))
                << "row " << i << " was written but not reported finished";
            ++untouched;
          }
        }
  EXPECT_GT(untouched, 0);
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
