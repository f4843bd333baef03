// Planner properties over thousands of random problems and policies: exact
// coverage, causal skipping, predicted budget respected, workspace limit
// respected (see plan_invariants.hpp for the rules, checked independently of
// the planner's code).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <random>
#include <thread>

#include "longattn/longattn.hpp"
#include "plan_invariants.hpp"

namespace {

using namespace longattn;

struct Drawn {
  plantest::Shape shape;
  Policy policy;
  DeviceProfile profile;
  bool fixed = false;
  DType dtype = DType::float32;
  std::int64_t Hkv = 1;  // divides shape.Hq
};

Drawn draw(std::mt19937_64& g) {
  auto pick = [&](std::int64_t lo, std::int64_t hi) {
    return std::uniform_int_distribution<std::int64_t>(lo, hi)(g);
  };
  auto pick_log = [&](std::int64_t lo, std::int64_t hi) {
    const double x =
        std::uniform_real_distribution<double>(std::log(double(lo)), std::log(double(hi) + 1))(g);
    return std::min(hi, static_cast<std::int64_t>(std::exp(x)));
  };
  Drawn d;
  const std::int64_t Hkv = pick(1, 8);
  // Empty shapes (B = 0, Lq = 0) now and then: they plan to nothing.
  d.shape = {pick(0, 40) == 0 ? 0 : pick(1, 4),
             Hkv * pick(1, 8),
             pick(0, 40) == 0 ? 0 : pick_log(1, 1 << 20),
             pick(0, 3) == 0 ? pick(0, 64) : pick_log(1, 1 << 20),
             pick(1, 256),
             pick(1, 256),
             pick(0, 1) == 1};
  d.Hkv = Hkv;
  d.dtype = static_cast<DType>(pick(0, 2));
  d.profile.default_gflops =
      std::exp(std::uniform_real_distribution<double>(std::log(1.0), std::log(1e6))(g));
  d.profile.dispatch_overhead_ms = std::uniform_real_distribution<double>(0, 0.5)(g);
  d.profile.submission_overhead_ms = std::uniform_real_distribution<double>(0, 0.5)(g);
  d.profile.state_gbps =
      std::exp(std::uniform_real_distribution<double>(std::log(1.0), std::log(3000.0))(g));
  d.profile.fill_rows = pick_log(64, 1 << 16);
  d.profile.query_tile = pick(1, 4) * 16;
  d.profile.key_tile = pick(1, 4) * 32;
  const int mode = static_cast<int>(pick(0, 9));
  d.policy.budget_ms =
      mode == 0
          ? 0
          : std::exp(std::uniform_real_distribution<double>(std::log(0.05), std::log(5000.0))(g));
  d.policy.safety = std::uniform_real_distribution<double>(0.3, 1.0)(g);
  d.policy.workspace_limit_bytes =
      pick(0, 3) == 0 ? pick_log(1 << 16, 1 << 24) : (std::int64_t{1} << 30);
  if (mode == 1) d.policy.chunk_threshold_keys = pick_log(1, 1 << 20);
  if (mode == 2) d.policy.fixed_chunk_keys = pick_log(1, 1 << 16);
  if (mode == 3) d.policy.fixed_query_rows = pick_log(1, 1 << 12);
  d.fixed = mode == 2 || mode == 3;
  return d;
}

// A plan for a drawn problem through the public API (no data needed).
Plan plan_for(const Drawn& d) {
  const auto& s = d.shape;
  const std::int64_t Hkv = d.Hkv;
  AttentionOptions o;
  o.causal = s.causal;
  o.policy = d.policy;
  DeviceProfile prof = d.profile;
  o.profile = &prof;
  return plan_attention(contiguous(nullptr, d.dtype, {s.B, s.Hq, s.Lq, s.D}),
                        contiguous(nullptr, d.dtype, {s.B, Hkv, s.Lk, s.D}),
                        contiguous(nullptr, d.dtype, {s.B, Hkv, s.Lk, s.Dv}),
                        contiguous(nullptr, d.dtype, {s.B, s.Hq, s.Lq, s.Dv}), o);
}

TEST(PlannerProperties, RandomProblemsAndPolicies) {
  std::mt19937_64 g(20261127);
  int chunked = 0, single = 0, rejected = 0, unkept = 0, empty = 0, by_head = 0;
  double slowest_ms = 0;
  const int n = 4000;
  for (int t = 0; t < n; ++t) {
    Drawn d = draw(g);
    const auto start = std::chrono::steady_clock::now();
    Plan plan;
    auto elapsed_ms = [&] {
      return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
          .count();
    };
    try {
      plan = plan_for(d);
    } catch (const InvalidArgument& e) {
      slowest_ms = std::max(slowest_ms, elapsed_ms());
      // Refusals: a workspace limit below one query row's state, or fixed
      // sizes, a key threshold or a workspace limit that pin the plan to
      // more dispatches than it may hold. A budget alone is never refused
      // (it is kept, or the plan says it is not).
      const std::string w = e.what();
      ASSERT_TRUE(w.find("dispatches with policy.") != std::string::npos ||
                  w.find("needs a running state") != std::string::npos)
          << w;
      ASSERT_TRUE(d.fixed || d.policy.workspace_limit_bytes < (std::int64_t{1} << 30) ||
                  d.policy.chunk_threshold_keys > 0)
          << w;
      ++rejected;
      continue;
    }
    slowest_ms = std::max(slowest_ms, elapsed_ms());
    Policy check = d.policy;
    if (d.fixed) check.budget_ms = 0;  // a fixed split may exceed the budget by request
    if (!plan.budget_kept) {
      // Only a plan that says why may run over the budget.
      ASSERT_EQ(plan.warnings.size(), 1u);
      EXPECT_NE(plan.warnings[0].find("cannot be kept"), std::string::npos) << plan.warnings[0];
      check.budget_ms = 0;
      ++unkept;
    }
    // A plan stays small enough to make and re-make in milliseconds.
    ASSERT_LE(plan.num_dispatches(), std::size_t{1} << 16);
    if (d.shape.B == 0 || d.shape.Lq == 0) {
      EXPECT_EQ(plan.num_dispatches(), 0u) << "no rows: nothing to dispatch";
      ++empty;
      continue;
    }
    // A plan by KV head is one pass per KV head (check_plan checks each).
    if (plan.by_kv_head) {
      ++by_head;
      ASSERT_EQ(plan.submissions.back().kv_head, d.Hkv - 1) << "trial " << t;
    }
    const std::string err = plantest::check_plan(d.shape, plan, check, d.profile.key_tile);
    ASSERT_EQ(err, "") << "trial " << t << ": B=" << d.shape.B << " Hq=" << d.shape.Hq
                       << " Lq=" << d.shape.Lq << " Lk=" << d.shape.Lk << " D=" << d.shape.D
                       << " causal=" << d.shape.causal << " Dv=" << d.shape.Dv
                       << " budget=" << d.policy.budget_ms << " safety=" << d.policy.safety
                       << " ws=" << d.policy.workspace_limit_bytes
                       << " thr=" << d.policy.chunk_threshold_keys
                       << " rate=" << d.profile.default_gflops << " fill=" << d.profile.fill_rows
                       << " qt=" << d.profile.query_tile << " kt=" << d.profile.key_tile
                       << " ovh=" << d.profile.dispatch_overhead_ms << "/"
                       << d.profile.submission_overhead_ms << " gbps=" << d.profile.state_gbps
                       << " (" << plan.reason << ")";
    (plan.chunked ? chunked : single)++;
  }
  // The draw must exercise every route, or the property says little.
  EXPECT_GT(chunked, n / 10);
  EXPECT_GT(by_head, n / 50);
  EXPECT_GT(single, n / 20);
  EXPECT_GT(unkept, n / 100);
  EXPECT_GT(empty, n / 100);
  EXPECT_LT(rejected, n / 4);
  std::printf(
      "%d chunked (%d by KV head), %d single pass, %d over budget by necessity, %d empty, %d "
      "refused; slowest plan %.1f ms\n",
      chunked, by_head, single, unkept, empty, rejected, slowest_ms);
}

TEST(PlannerProperties, SmallBudgetSplitsAndLargeBudgetDoesNot) {
  DeviceProfile prof;
  prof.default_gflops = 100;
  Drawn d;
  d.shape = {1, 8, 4096, 4096, 64, 64, true};
  d.profile = prof;
  d.policy.budget_ms = 1e6;
  EXPECT_FALSE(plan_for(d).chunked);
  d.policy.budget_ms = 10;
  const Plan p = plan_for(d);
  EXPECT_TRUE(p.chunked);
  EXPECT_GT(p.submissions.size(), 10u);
  EXPECT_EQ(plantest::check_plan(d.shape, p, d.policy, prof.key_tile), "");
}

TEST(PlannerProperties, CausalSkipsHiddenRectangles) {
  // With causal masking about half the pairs are visible: the plan's FLOPs
  // must match the visible count, not Lq * Lk.
  DeviceProfile prof;
  prof.default_gflops = 10;
  Drawn d;
  d.shape = {1, 4, 2000, 3000, 64, 64, true};
  d.profile = prof;
  d.policy.budget_ms = 5;
  const Plan p = plan_for(d);
  ASSERT_TRUE(p.chunked);
  const double pairs = 2000.0 * 1000 + 2000.0 * 2001 / 2;
  EXPECT_NEAR(p.total_flops, 4.0 * 4 * 64 * pairs, 1.0);
}

// No budget, key chunks of 1024 and a workspace of `rows` query rows of
// state, for 32 heads of Dv 128 and Lq queries.
Drawn workspace_limited(std::int64_t Lq, std::int64_t Lk, std::int64_t rows) {
  Drawn d;
  d.profile.default_gflops = 10;
  d.profile.query_tile = 48;
  d.shape = {1, 32, Lq, Lk, 128, 128, false};
  d.policy.budget_ms = 0;
  d.policy.fixed_chunk_keys = 1024;
  d.policy.workspace_limit_bytes = 32 * 130 * 4 * rows;
  return d;
}

TEST(PlannerProperties, WorkspaceLimitShrinksGroups) {
  const Drawn d = workspace_limited(8192, 8192, 100);
  const Plan p = plan_for(d);
  EXPECT_LE(p.workspace_bytes, d.policy.workspace_limit_bytes);
  EXPECT_LE(p.query_rows, 100);
  EXPECT_EQ(plantest::check_plan(d.shape, p, d.policy, d.profile.key_tile), "");
}

// The query groups' heights, in order of their first rows.
std::vector<std::int64_t> group_heights(const Plan& p) {
  std::map<std::int64_t, std::int64_t> ends;  // q0 -> q1
  for (const Submission& s : p.submissions)
    for (const Dispatch& x : s.dispatches) ends[x.rect.q0] = x.rect.q1;
  std::vector<std::int64_t> h;
  for (const auto& [q0, q1] : ends) h.push_back(q1 - q0);
  return h;
}

// The rows are spread evenly over the groups their height makes, never a
// short remainder last (the group that sees the most keys under the causal
// rule): by the workspace, 10000 rows in groups of at most 4096 are three of
// 3360, 3360 and 3280 (not 4096, 4096, 1808); by the budget, on a measured
// rate, 16384 rows at groups of 3072 are five of 2736 and one of 2704 (not
// five of 3072 and one of 1024).
TEST(PlannerProperties, GroupsAreEvenNotAShortRemainder) {
  Drawn d = workspace_limited(10000, 4096, 4096);
  Plan p = plan_for(d);
  EXPECT_EQ(group_heights(p), (std::vector<std::int64_t>{3360, 3360, 3280}));
  EXPECT_EQ(plantest::check_plan(d.shape, p, d.policy, d.profile.key_tile), "");

  DeviceProfile prof = d.profile;
  prof.default_gflops = 1000;
  prof.fill_rows = 4 * 3072;  // 3072 rows of 4 heads fill the device
  prof.gflops[DeviceProfile::rate_key(DType::float32, 128, true, false)] = 1000;
  d.shape = {1, 4, 16384, 16384, 128, 128, true};
  d.profile = prof;
  d.policy = Policy{};
  d.policy.budget_ms = 10;
  p = plan_for(d);
  ASSERT_TRUE(p.chunked);
  EXPECT_EQ(group_heights(p), (std::vector<std::int64_t>{2736, 2736, 2736, 2736, 2736, 2704}));
  EXPECT_EQ(plantest::check_plan(d.shape, p, d.policy, prof.key_tile), "");
  // On a rate not yet measured the plan starts with a ramp of small groups
  // (the probe); the rows after them are spread evenly again.
  d.profile.gflops.clear();
  p = plan_for(d);
  const std::vector<std::int64_t> ramped = group_heights(p);
  ASSERT_GE(ramped.size(), 3u);
  const std::int64_t tallest = *std::max_element(ramped.begin(), ramped.end());
  EXPECT_LT(ramped.front(), tallest) << "no ramp: the test checks nothing";
  EXPECT_GE(ramped.back(), tallest - static_cast<std::int64_t>(ramped.size()) * 48);
  EXPECT_EQ(plantest::check_plan(d.shape, p, d.policy, prof.key_tile), "");
  // Fixed query rows stay as asked, remainder and all.
  d.policy.fixed_query_rows = 3072;
  d.policy.budget_ms = 0;
  d.policy.fixed_chunk_keys = 4096;
  EXPECT_EQ(group_heights(plan_for(d)),
            (std::vector<std::int64_t>{3072, 3072, 3072, 3072, 3072, 1024}));
  // Not where even groups take more waves of the device: 32 heads of
  // 128-row tiles, 264 tiles a wave, 12800 rows in groups of at most 4224
  // (33 tiles, 4 whole waves): 4224 x 3 + 128 take 13 waves, 3200 x 4 16.
  d = workspace_limited(12800, 4096, 4224);
  d.profile.query_tile = 128;
  d.profile.fill_rows = 264 * 128;
  EXPECT_EQ(group_heights(plan_for(d)), (std::vector<std::int64_t>{4224, 4224, 4224, 128}));
  d.profile.fill_rows = 256 * 128;  // 5 waves of 4224 rows, 4 of 3200: 16 either way
  EXPECT_EQ(group_heights(plan_for(d)), (std::vector<std::int64_t>{3200, 3200, 3200, 3200}));
}

TEST(PlannerProperties, AWorkspaceBelowOneRowPlansSinglePassGroups) {
  // policy.workspace_limit_bytes = 0 is a valid policy; a budgeted problem
  // that must be split was refused ("below the running state of one query
  // row"). With no state allowed, every group is one single pass.
  DeviceProfile prof;
  prof.default_gflops = 10;
  Drawn d;
  d.shape = {1, 8, 4096, 4096, 64, 64, true};
  d.profile = prof;
  d.policy.budget_ms = 5;
  d.policy.workspace_limit_bytes = 0;
  const Plan p = plan_for(d);
  EXPECT_TRUE(p.chunked);
  EXPECT_GT(p.submissions.size(), 10u);
  EXPECT_EQ(p.workspace_bytes, 0);
  for (const Submission& s : p.submissions)
    for (const Dispatch& x : s.dispatches) ASSERT_EQ(x.mode, Mode::single_pass);
  EXPECT_EQ(plantest::check_plan(d.shape, p, d.policy, prof.key_tile), "");
  // Fixed key chunks need state: refused by name.
  d.policy.fixed_chunk_keys = 512;
  EXPECT_THROW((void)plan_for(d), InvalidArgument);
}

TEST(PlannerProperties, ThresholdForcesChunking) {
  DeviceProfile prof;
  prof.default_gflops = 1e9;  // everything "fits" a budget
  Drawn d;
  d.shape = {1, 2, 64, 100000, 64, 64, false};
  d.profile = prof;
  d.policy.budget_ms = 0;
  d.policy.chunk_threshold_keys = 32768;
  const Plan p = plan_for(d);
  EXPECT_TRUE(p.chunked);
  EXPECT_EQ(p.num_dispatches(), 4u);  // ceil(100000 / 32768)
  EXPECT_EQ(plantest::check_plan(d.shape, p, d.policy, prof.key_tile), "");
}

TEST(PlannerProperties, NullDataIsAccepted) {
  // attention.hpp: only shapes, dtypes and options are read by
  // plan_attention(); data pointers may be null.
  const auto q = contiguous(nullptr, DType::float32, {1, 2, 100, 64});
  const auto k = contiguous(nullptr, DType::float32, {1, 2, 1000, 64});
  Plan plan;
  EXPECT_NO_THROW(plan = plan_attention(q, k, k, q));
  EXPECT_EQ(plan.num_dispatches(), 1u);
}

TEST(PlannerProperties, SmallProblemsRunInOneDispatchUnderTheDefaultPolicy) {
  const auto q = contiguous(nullptr, DType::float32, {1, 8, 128, 64});
  const auto k = contiguous(nullptr, DType::float32, {1, 8, 128, 64});
  AttentionOptions o;
  o.causal = true;
  const Plan plan = plan_attention(q, k, k, q, o);
  EXPECT_FALSE(plan.chunked) << plan.reason;
  EXPECT_EQ(plan.num_dispatches(), 1u);
  EXPECT_EQ(plan.workspace_bytes, 0);
}

}  // namespace

namespace {

// A CPU call on fewer threads than the machine has plans for those: the
// profile's fill_rows (rows that keep every hardware thread busy) scaled to
// the call's threads, so its query groups are shorter and its key chunks
// longer than a call on every thread.
TEST(PlannerProperties, ACallOnFewerThreadsPlansForThoseThreads) {
  const int hw = static_cast<int>(std::thread::hardware_concurrency());
  if (hw < 2) GTEST_SKIP() << "needs 2 hardware threads, this machine has " << hw;
  auto rows_with = [&](int threads) {
    AttentionOptions o;
    o.causal = true;
    o.threads = threads;
    o.policy.budget_ms = 2;
    DeviceProfile prof = default_profile(BackendKind::cpu);
    prof.gflops["float32/d64/causal"] = 100;  // measured: no probe
    o.profile = &prof;
    const Plan p = plan_attention(contiguous(nullptr, DType::float32, {1, 8, 8192, 64}),
                                  contiguous(nullptr, DType::float32, {1, 1, 8192, 64}),
                                  contiguous(nullptr, DType::float32, {1, 1, 8192, 64}),
                                  contiguous(nullptr, DType::float32, {1, 8, 8192, 64}), o);
    EXPECT_TRUE(p.chunked) << p.reason;
    return p.query_rows;
  };
  EXPECT_LT(rows_with(1), rows_with(0));
  EXPECT_EQ(rows_with(hw), rows_with(0));
}

}  // namespace
