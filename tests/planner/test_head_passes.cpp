// Plans by KV head (core/head_passes.hpp): a chunked CPU call with KV heads
// to share runs one pass per KV head. The passes give the reference's result
// and the single pass's, on every layout (the head offsets go through the
// strides); each head's rows are covered once; the run's report, progress
// counts, finished rows and cancellation speak for the whole call; and the
// calls that must not run by head (one KV head, an array mask, decode, a
// single pass, another backend's profile) do not.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "support.hpp"

namespace {

using namespace longattn;

// The CPU profile with one row enough to keep the device busy and a query
// tile of 4, so that the small cases of these tests run by head on any
// number of threads (a pass must fill as many rows as one query tile of
// every head, head_passes.cpp).
DeviceProfile passes_profile() {
  DeviceProfile p = default_profile(BackendKind::cpu);
  p.fill_rows = 1;
  p.query_tile = 4;
  return p;
}

lt::Case gqa_case(std::uint64_t seed) {
  lt::Case c;
  c.B = 2, c.Hq = 6, c.Hkv = 3, c.Lq = 70, c.Lk = 150, c.D = 32;
  c.causal = true, c.sinks = true, c.seed = seed;
  return c;
}

// Each KV head's submissions come as one run, heads in order, every head
// present; within a head, every output row is written exactly once.
void expect_passes(const Plan& plan, const lt::Case& c) {
  ASSERT_TRUE(plan.by_kv_head) << plan.reason;
  ASSERT_TRUE(plan.chunked);
  std::int64_t head = 0;
  std::map<std::int64_t, std::vector<int>> written;  // kv head -> writes per row
  for (const Submission& s : plan.submissions) {
    ASSERT_GE(s.kv_head, head) << "KV heads out of order";
    ASSERT_LE(s.kv_head, head + 1) << "a KV head skipped";
    head = s.kv_head;
    auto& rows = written[head];
    rows.resize(static_cast<std::size_t>(c.Lq));
    for (const Dispatch& d : s.dispatches)
      if (d.mode == Mode::single_pass || d.mode == Mode::finalize)
        for (std::int64_t i = d.rect.q0; i < d.rect.q1; ++i) ++rows[static_cast<std::size_t>(i)];
  }
  EXPECT_EQ(head, c.Hkv - 1) << "the last pass is not the last KV head";
  for (const auto& [h, rows] : written)
    for (std::size_t i = 0; i < rows.size(); ++i)
      ASSERT_EQ(rows[i], 1) << "KV head " << h << " row " << i;
}

// What plan_attention says for d's case under `o`.
Plan plan_of(const lt::CaseData& d, const AttentionOptions& o) {
  const lt::Tensors t = d.host_views();
  return plan_attention(t.q, t.k, t.v, t.out, d.options(t, o));
}

// Runs d's case on `profile` (a copy) and `policy`, checks the result
// against the reference and the plan for passes by KV head; the report.
RunReport run_by_head(lt::CaseData& d, DeviceProfile profile, const Policy& policy) {
  RunReport rep;
  AttentionOptions o;
  o.policy = policy;
  o.profile = &profile;
  o.report = &rep;
  lt::run(d, o);
  const lt::Comparison r = lt::compare(d);
  EXPECT_TRUE(r.ok) << r.message;
  EXPECT_TRUE(rep.completed);
  expect_passes(rep.plan, d.c);
  return rep;
}

TEST(HeadPasses, MatchTheReferenceAndTheSinglePassOnEveryLayout) {
  std::uint64_t seed = 900;
  const DeviceProfile prof = passes_profile();
  for (DType t : {DType::float32, DType::float16, DType::bfloat16})
    for (lt::Layout layout : {lt::Layout::bhld, lt::Layout::blhd, lt::Layout::cache_slice,
                              lt::Layout::cache_slice_blhd})
      for (int variant = 0; variant < 3; ++variant) {
        lt::Case c = gqa_case(++seed);
        c.dtype = t, c.layout = layout;
        if (variant == 1) c.Hq = 8, c.Hkv = 2, c.Dv = 48, c.causal = false, c.softcap = 20;
        if (variant == 2) c.B = 1, c.Hq = 4, c.Hkv = 4, c.window_left = 40, c.window_right = 3;
        lt::CaseData d(c);

        AttentionOptions single;
        single.policy = lt::single_pass_policy();
        lt::run(d, single);
        const auto one = d.out.read();

        d.reset_outputs();
        run_by_head(d, prof, lt::chunked_policy(32, 16));
        const auto m = lt::metric(d.out.read(), one, c.dv());
        EXPECT_LE(m.err, lt::tolerance(t)) << c.name() << ": by head vs single pass";
      }
}

// The budgeted path: a guessed rate starts with a probe in the first pass,
// and the re-plans after it (and after any overshoot) keep the order.
TEST(HeadPasses, RePlansKeepTheOrderAndTheResult) {
  lt::Case c = gqa_case(950);
  c.B = 1, c.Hq = 8, c.Hkv = 4, c.Lq = 400, c.Lk = 600, c.D = 64;
  lt::CaseData d(c);
  DeviceProfile guess = passes_profile();
  guess.gflops.clear();  // every rate a guess: the first pass probes
  Policy budget;
  budget.budget_ms = 0.5;
  const RunReport rep = run_by_head(d, guess, budget);
  EXPECT_GE(rep.replans, 1);
  EXPECT_NE(rep.plan.reason.find("probe"), std::string::npos) << rep.plan.reason;
  ASSERT_EQ(rep.finished_rows.size(), 1u);
  EXPECT_EQ(rep.finished_rows[0], std::make_pair(std::int64_t{0}, c.Lq));
  double flops = 0;
  for (const SubmissionReport& s : rep.submissions) flops += s.flops;
  // Causal bottom-right with Lk > Lq: row i sees Lk - Lq + i + 1 keys.
  double pairs = 0;
  for (std::int64_t i = 0; i < c.Lq; ++i) pairs += static_cast<double>(c.Lk - c.Lq + i + 1);
  EXPECT_DOUBLE_EQ(flops, 2.0 * static_cast<double>(c.B * c.Hq * (c.D + c.dv())) * pairs);
}

TEST(HeadPasses, PlanAttentionShowsThePasses) {
  lt::CaseData d(gqa_case(960));
  DeviceProfile local = passes_profile();
  AttentionOptions o;
  o.policy = lt::chunked_policy(64, 32);
  o.profile = &local;
  const Plan plan = plan_of(d, o);
  expect_passes(plan, d.c);
  // The same plan for each head: 3 heads x 3 groups x the chunks of each.
  EXPECT_EQ(plan.submissions.size() % 3, 0u);
  EXPECT_NE(plan.reason.find("KV head by KV head"), std::string::npos) << plan.reason;

  RunReport rep;
  o.report = &rep;
  lt::run(d, o);
  ASSERT_EQ(rep.plan.submissions.size(), plan.submissions.size());
  for (std::size_t i = 0; i < plan.submissions.size(); ++i)
    EXPECT_EQ(rep.plan.submissions[i].kv_head, plan.submissions[i].kv_head);
}

// A pass of G query heads must hold as many rows as one query tile of every
// head: a decode step does not. Nor do a single pass, one KV head, an array
// mask or another backend's profile: they keep the all-heads plan.
TEST(HeadPasses, OnlyChunkedCpuCallsWithHeadsToShare) {
  struct Probe {
    const char* name;
    lt::Case c;
    DeviceProfile prof;
    Policy pol;
  };
  const DeviceProfile cpu = passes_profile();
  DeviceProfile mlx = cpu;
  mlx.backend = "mlx.cpu";
  std::vector<Probe> probes;
  lt::Case base = gqa_case(970);
  probes.push_back({"one KV head", base, cpu, lt::chunked_policy(32)});
  probes.back().c.Hkv = 1;
  probes.push_back({"array mask", base, cpu, lt::chunked_policy(32)});
  probes.back().c.mask = lt::MaskKind::boolean;
  probes.push_back({"single pass", base, cpu, lt::single_pass_policy()});
  probes.push_back({"another backend's profile", base, mlx, lt::chunked_policy(32)});
  probes.push_back({"decode", base, default_profile(BackendKind::cpu), lt::chunked_policy(32)});
  probes.back().c.Lq = 1;
  for (Probe& p : probes) {
    lt::CaseData d(p.c);
    AttentionOptions o;
    o.policy = p.pol;
    o.profile = &p.prof;
    const Plan plan = plan_of(d, o);
    EXPECT_FALSE(plan.by_kv_head) << p.name;
    for (const Submission& s : plan.submissions) EXPECT_EQ(s.kv_head, -1) << p.name;
  }
  // ... and the same case with two KV heads and the CPU profile does.
  lt::CaseData d(base);
  AttentionOptions o;
  o.policy = lt::chunked_policy(32);
  DeviceProfile prof = cpu;
  o.profile = &prof;
  EXPECT_TRUE(plan_of(d, o).by_kv_head);
}

// Progress counts the whole call's submissions, and a cancel says which
// rows are final: none before the last pass (a row is final for all heads
// only then); written rows of earlier heads are exact, later heads untouched.
TEST(HeadPasses, ProgressAndCancelSpeakForTheWholeCall) {
  const lt::Case c = gqa_case(980);
  lt::CaseData d(c);
  DeviceProfile prof = passes_profile();
  AttentionOptions o;
  o.policy = lt::chunked_policy(64, 32);
  o.profile = &prof;
  const Plan plan = plan_of(d, o);
  ASSERT_TRUE(plan.by_kv_head);
  std::size_t per_head = 0;
  for (const Submission& s : plan.submissions) per_head += s.kv_head == 0 ? 1 : 0;
  const std::size_t total = plan.submissions.size();
  ASSERT_EQ(total, per_head * static_cast<std::size_t>(c.Hkv));

  // Whole run: done counts 1..total against total.
  std::vector<std::size_t> seen;
  o.progress = [&](std::size_t done, std::size_t planned, const RunReport& r) {
    EXPECT_EQ(planned, total);
    EXPECT_EQ(r.submissions.size(), done);
    seen.push_back(done);
    return true;
  };
  lt::run(d, o);
  ASSERT_EQ(seen.size(), total);
  EXPECT_EQ(seen.back(), total);

  // Cancelled at each point: inside the first pass, right after it, inside
  // the last pass.
  const std::int64_t group = c.Hq / c.Hkv;
  for (std::size_t stop : {std::size_t{2}, per_head, total - 2}) {
    d.reset_outputs();
    RunReport rep;
    o.report = &rep;
    o.progress = [&](std::size_t done, std::size_t, const RunReport&) { return done < stop; };
    EXPECT_THROW(lt::run(d, o), Cancelled);
    ASSERT_EQ(rep.submissions.size(), stop);
    const std::int64_t stopped_in = rep.plan.submissions.back().kv_head;
    const bool last_pass = stopped_in == c.Hkv - 1;
    EXPECT_EQ(rep.finished_rows.empty(), !last_pass) << "stopped after " << stop;
    auto finished = [&](std::int64_t i) {
      for (auto [a, b] : rep.finished_rows)
        if (i >= a && i < b) return true;
      return false;
    };
    const auto got = d.out.read();
    const auto& want = d.expected().o;
    std::int64_t exact_unreported = 0;
    for (std::int64_t b = 0; b < c.B; ++b)
      for (std::int64_t h = 0; h < c.Hq; ++h)
        for (std::int64_t i = 0; i < c.Lq; ++i)
          for (std::int64_t x = 0; x < c.dv(); ++x) {
            const auto idx = static_cast<std::size_t>(((b * c.Hq + h) * c.Lq + i) * c.dv() + x);
            const std::int64_t kv = h / group;
            if (kv > stopped_in) {  // its pass never started
              ASSERT_TRUE(std::isnan(got[idx])) << "head " << h << " row " << i;
            } else if (kv < stopped_in || finished(i)) {  // its pass, or the row, done
              ASSERT_NEAR(got[idx], want[idx], 1e-4) << "head " << h << " row " << i;
              if (!finished(i)) ++exact_unreported;
            } else if (!std::isnan(got[idx])) {  // the pass stopped in: written or not
              ASSERT_NEAR(got[idx], want[idx], 1e-4) << "head " << h << " row " << i;
            }
          }
    if (stopped_in > 0) {
      EXPECT_GT(exact_unreported, 0) << "earlier heads were written";
    }
  }
}

}  // namespace
