// libFuzzer target: random shapes (empty ones included: B, Lq, Lk = 0),
// device profiles and every policy field the validator accepts, through
// plan_attention(), then a re-plan from a random point of that plan (what the
// executor does after each measured submission). It aborts when
//  - the validator accepts a problem and the planner then throws, except an
//    InvalidArgument refusing explicit fixed sizes (policy.fixed_chunk_keys /
//    fixed_query_rows) that would need too many dispatches (documented in
//    plan.hpp): any budget, threshold or workspace the validator accepts must
//    get a plan;
//  - a plan breaks an invariant of tests/planner/plan_invariants.hpp;
//  - one plan takes more than kMaxPlanMs of CPU time: planning must cost
//    milliseconds whatever the problem (thread CPU time, so a busy machine
//    does not trip it; the fuzz build is instrumented, so this is generous).
#include <time.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "core/head_passes.hpp"
#include "core/planner.hpp"
#include "core/problem.hpp"
#include "longattn/longattn.hpp"
#include "plan_invariants.hpp"

namespace {

using namespace longattn;

// The largest plans (65,536 dispatches) take about 20 ms in a Release build
// and up to about 15x that here under ASan, UBSan and coverage; the inputs
// this exists to catch took seconds in Release (4.5 s for 587,776
// dispatches).
constexpr double kMaxPlanMs = 600;

struct Reader {
  const std::uint8_t* p;
  std::size_t n;
  template <class T>
  T take() {
    T v{};
    const std::size_t k = n < sizeof(T) ? n : sizeof(T);
    std::memcpy(&v, p, k);
    p += k;
    n -= k;
    return v;
  }
  std::int64_t in(std::int64_t lo, std::int64_t hi) {
    const auto r = take<std::uint32_t>();
    return lo + static_cast<std::int64_t>(r % static_cast<std::uint64_t>(hi - lo + 1));
  }
  // Log-uniform-ish in [0, 2^max_bits]: small sizes (0, 1, tile +- 1) as
  // often as large ones.
  std::int64_t size(int max_bits) { return in(0, std::int64_t{1} << in(0, max_bits)); }
  double real(double lo, double hi) { return lo + (hi - lo) * (take<std::uint16_t>() / 65535.0); }
};

double thread_cpu_ms() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_nsec) * 1e-6;
}

const DeviceProfile* g_profile = nullptr;  // of the input being run, for fail()

[[noreturn]] void fail(const char* what, const std::string& detail, const plantest::Shape& s,
                       const Policy& pol) {
  std::fprintf(stderr,
               "fuzz_planner: %s: %s\n  shape B=%lld Hq=%lld Lq=%lld Lk=%lld D=%lld Dv=%lld "
               "causal=%d\n  policy budget_ms=%g safety=%g chunk_threshold_keys=%lld "
               "workspace_limit_bytes=%lld fixed_chunk_keys=%lld fixed_query_rows=%lld\n",
               what, detail.c_str(), static_cast<long long>(s.B), static_cast<long long>(s.Hq),
               static_cast<long long>(s.Lq), static_cast<long long>(s.Lk),
               static_cast<long long>(s.D), static_cast<long long>(s.Dv), int(s.causal),
               pol.budget_ms, pol.safety, static_cast<long long>(pol.chunk_threshold_keys),
               static_cast<long long>(pol.workspace_limit_bytes),
               static_cast<long long>(pol.fixed_chunk_keys),
               static_cast<long long>(pol.fixed_query_rows));
  if (g_profile)
    std::fprintf(stderr,
                 "  profile default_gflops=%g measured=%g dispatch_overhead_ms=%g "
                 "submission_overhead_ms=%g state_gbps=%g fill_rows=%lld query_tile=%lld "
                 "key_tile=%lld\n",
                 g_profile->default_gflops,
                 g_profile->gflops.empty() ? 0.0 : g_profile->gflops.begin()->second,
                 g_profile->dispatch_overhead_ms, g_profile->submission_overhead_ms,
                 g_profile->state_gbps, static_cast<long long>(g_profile->fill_rows),
                 static_cast<long long>(g_profile->query_tile),
                 static_cast<long long>(g_profile->key_tile));
  __builtin_trap();
}

// The planner refusals the API documents (planner.cpp): a plan that needs
// more than 65,536 dispatches because of what the policy pinned (fixed
// sizes, a key threshold, a workspace limit; never a budget alone: the
// message names them), and fixed key chunks under a workspace limit below
// one row of state.
bool documented_refusal(const Error& e, const Policy& pol) {
  const std::string w = e.what();
  return e.code() == ErrorCode::invalid_argument &&
         (w.find("dispatches with policy.") != std::string::npos ||
          (pol.fixed_chunk_keys > 0 && w.find("needs a running state") != std::string::npos));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Reader r{data, size};
  const std::int64_t Hkv = r.in(1, 8);
  plantest::Shape s{};
  s.B = r.size(3);  // 0..8
  s.Hq = Hkv * r.in(1, 8);
  s.Lq = r.size(18);
  s.Lk = r.size(18);
  s.D = r.in(1, 256);
  s.Dv = r.in(1, 256);
  s.causal = r.in(0, 1) == 1;
  const DType t = static_cast<DType>(r.in(0, 2));

  // Profiles a calibration could produce: positive rates, small overheads.
  DeviceProfile prof;
  prof.default_gflops = std::pow(10.0, r.real(-1, 6));
  if (r.in(0, 1))  // a measured rate for this problem kind (no first-submission guard)
    prof.gflops[DeviceProfile::rate_key(t, s.D, s.causal, false)] = std::pow(10.0, r.real(-1, 6));
  prof.dispatch_overhead_ms = r.real(0, 1);
  prof.submission_overhead_ms = r.real(0, 1);
  prof.state_gbps = std::pow(10.0, r.real(-1, 4));
  prof.fill_rows = r.in(1, 1 << 16);
  prof.query_tile = r.in(1, 256);
  prof.key_tile = r.in(1, 256);
  g_profile = &prof;

  // Every policy field over the range the validator accepts, each drawn on
  // its own, so fixed sizes, thresholds and budgets combine.
  Policy pol;
  pol.budget_ms = r.in(0, 3) == 0 ? 0 : std::pow(10.0, r.real(-3, 5));
  pol.safety = r.in(0, 7) == 0 ? 1.0 : r.real(1.0 / 65536, 1.0);
  if (r.in(0, 2) == 0) pol.chunk_threshold_keys = r.size(20);
  switch (r.in(0, 3)) {
    case 0:
      pol.workspace_limit_bytes = 0;
      break;
    case 1:
      pol.workspace_limit_bytes = r.size(40);
      break;
    default:
      break;  // the 1 GiB default
  }
  if (r.in(0, 2) == 0) pol.fixed_chunk_keys = r.size(18);
  if (r.in(0, 2) == 0) pol.fixed_query_rows = r.size(14);

  AttentionOptions o;
  o.causal = s.causal;
  o.policy = pol;
  o.profile = &prof;
  const TensorView q = contiguous(nullptr, t, {s.B, s.Hq, s.Lq, s.D});
  const TensorView k = contiguous(nullptr, t, {s.B, Hkv, s.Lk, s.D});
  const TensorView v = contiguous(nullptr, t, {s.B, Hkv, s.Lk, s.Dv});
  const TensorView out = contiguous(nullptr, t, {s.B, s.Hq, s.Lq, s.Dv});

  // The validator decides what is a legal problem; its refusals must be
  // typed and say which call refused.
  core::Problem problem;
  try {
    problem = core::validate_attention(q, k, v, out, o, "longattn::plan_attention", false);
  } catch (const Error& e) {
    if (std::string(e.what()).rfind("[longattn::plan_attention] ", 0) != 0)
      fail("validator message without the operation", e.what(), s, pol);
    return 0;
  }

  Plan plan;
  double t0 = thread_cpu_ms();
  try {
    plan = plan_attention(q, k, v, out, o);
  } catch (const Error& e) {
    if (documented_refusal(e, pol)) return 0;
    fail("the planner threw on a problem the validator accepts", e.what(), s, pol);
  } catch (const std::exception& e) {
    fail("the planner threw a non-longattn exception", e.what(), s, pol);
  }
  double ms = thread_cpu_ms() - t0;
  if (ms > kMaxPlanMs)
    fail(
        "planning took too long",
        std::to_string(ms) + " ms CPU for " + std::to_string(plan.num_dispatches()) + " dispatches",
        s, pol);

  // Fixed sizes may exceed the budget by request; a plan that says the
  // budget cannot be met on this device (a warning) runs at its smallest
  // sensible size instead. Every other invariant holds for both.
  Policy check = pol;
  if (pol.fixed_chunk_keys > 0 || pol.fixed_query_rows > 0 || !plan.warnings.empty())
    check.budget_ms = 0;
  // B = 0 has no rows at all: planning nothing is the right plan.
  const bool nothing_to_do = s.B == 0 && plan.submissions.empty();
  const std::string err =
      nothing_to_do ? std::string() : plantest::check_plan(s, plan, check, prof.key_tile);
  if (!err.empty()) fail("invalid plan", err, s, pol);

  // Re-plan from the boundary after a random submission, with the rate
  // moved as a measurement would move it, as the executor does.
  if (plan.submissions.size() < 2) return 0;
  const auto j =
      static_cast<std::size_t>(r.in(0, static_cast<std::int64_t>(plan.submissions.size()) - 2));
  const Dispatch& last = plan.submissions[j].dispatches.back();
  core::Cursor from;
  if (last.mode == Mode::init || last.mode == Mode::accumulate) {
    from = {last.rect.q0, last.rect.q1 - last.rect.q0, last.rect.k1};
  } else {
    from.q_begin = last.rect.q1;
  }
  DeviceProfile measured = prof;
  measured.gflops[DeviceProfile::rate_key(t, s.D, s.causal, false)] =
      prof.rate_gflops(DeviceProfile::rate_key(t, s.D, s.causal, false)) *
      std::pow(10.0, r.real(-2, 2));
  // A plan by KV head re-plans the rest of the head it stands in, then
  // the later heads.
  const std::int64_t head = plan.submissions[j].kv_head;
  Plan rest;
  t0 = thread_cpu_ms();
  try {
    rest = plan.by_kv_head ? core::plan_by_kv_head(problem, measured, pol, head, from,
                                                   "longattn::attention", core::RateTrust::profile)
                           : core::make_plan(problem, measured, pol, from);
  } catch (const Error& e) {
    if (documented_refusal(e, pol)) return 0;
    fail("a re-plan threw", e.what(), s, pol);
  }
  ms = thread_cpu_ms() - t0;
  if (ms > kMaxPlanMs)
    fail(
        "re-planning took too long",
        std::to_string(ms) + " ms CPU for " + std::to_string(rest.num_dispatches()) + " dispatches",
        s, pol);
  // The re-plan continues exactly where the cursor says and reaches Lq.
  if (from.q_begin < s.Lq) {
    if (rest.submissions.empty()) fail("empty re-plan", "", s, pol);
    const Rect& first = rest.submissions.front().dispatches.front().rect;
    const std::int64_t want_k = from.live_rows > 0 ? from.k_next : 0;
    if (first.q0 != from.q_begin || first.k0 != want_k)
      fail("re-plan does not continue at its cursor",
           "starts at q=" + std::to_string(first.q0) + " k=" + std::to_string(first.k0) +
               ", cursor q=" + std::to_string(from.q_begin) + " k=" + std::to_string(want_k),
           s, pol);
    if (rest.submissions.back().dispatches.back().rect.q1 != s.Lq)
      fail("re-plan does not reach Lq", "", s, pol);
    if (rest.submissions.front().kv_head != head ||
        rest.submissions.back().kv_head != (plan.by_kv_head ? Hkv - 1 : -1))
      fail("re-plan by KV head does not go from its head to the last",
           "heads " + std::to_string(rest.submissions.front().kv_head) + ".." +
               std::to_string(rest.submissions.back().kv_head) + " from head " +
               std::to_string(head),
           s, pol);
  }
  return 0;
}
