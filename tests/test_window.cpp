// Sliding windows (AttentionOptions::window_left / window_right): every
// window against the reference for every dtype, with and without causal,
// both diagonal alignments, with a mask array, sinks and GQA; rows that see
// nothing; chunked == single pass; skipping hidden tiles and rectangles never
// changes a result (the same window as a dense boolean mask); and the plan of
// a long sliding-window prefill costs Lq x window, not Lq x Lk / 2.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <utility>

#include "longattn/longattn.hpp"
#include "test_common.hpp"

namespace {

using longattn::DType;
using lt::Case;
using lt::MaskKind;

const double kInf = std::numeric_limits<double>::infinity();

using Window = std::pair<std::int64_t, std::int64_t>;

// Windows that cover the cases: the diagonal alone, one side bounded, both,
// narrower and wider than a 64-key tile, and wider than any Lk below.
const std::vector<Window>& windows() {
  static const std::vector<Window> w{{0, 0},     {0, -1},    {-1, 0},    {3, -1},
                                     {-1, 5},    {17, 4},    {64, 0},    {63, 65},
                                     {200, 200}, {1000, -1}, {-1, 1000}, {-1, -1}};
  return w;
}

// Independent of the library and the reference: does row i see key j?
bool sees(const Case& c, std::int64_t i, std::int64_t j) {
  const std::int64_t d = c.causal_top_left ? i : i + c.Lk - c.Lq;
  if (c.causal && j > d) return false;
  if (c.window_left >= 0 && j < d - c.window_left) return false;
  if (c.window_right >= 0 && j > d + c.window_right) return false;
  return true;
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::isinf(a[i]) && a[i] == b[i]) continue;
    m = std::max(m, std::abs(a[i] - b[i]));
  }
  return m;
}

TEST(Window, EveryWindowDtypeAlignmentAndShape) {
  std::uint64_t seed = 1200;
  const std::vector<std::pair<std::int64_t, std::int64_t>> shapes{{37, 150}, {150, 37}, {130, 130}};
  for (DType t : lt::all_dtypes())
    for (const auto& [lq, lk] : shapes)
      for (const Window& w : windows())
        for (bool causal : {false, true})
          for (bool top_left : {false, true}) {
            Case c;
            c.B = 1, c.Hq = 4, c.Hkv = 2, c.Lq = lq, c.Lk = lk, c.D = 32;
            c.dtype = t, c.causal = causal, c.causal_top_left = top_left;
            c.window_left = w.first, c.window_right = w.second;
            c.seed = ++seed;
            lt::check_case(c);
          }
}

TEST(Window, WithMaskArraySinksAndGqa) {
  std::uint64_t seed = 1700;
  for (DType t : lt::all_dtypes())
    for (MaskKind kind : {MaskKind::none, MaskKind::boolean, MaskKind::additive})
      for (bool sinks : {false, true})
        for (bool causal : {false, true}) {
          Case c;
          c.B = 2, c.Hq = 8, c.Hkv = 2, c.Lq = 70, c.Lk = 203, c.D = 64, c.Dv = 48;
          c.dtype = t, c.mask = kind, c.sinks = sinks, c.causal = causal;
          c.mask_broadcast = {true, false, false, false};
          c.window_left = 40, c.window_right = causal ? -1 : 9;
          c.seed = ++seed;
          lt::check_case(c);
        }
}

// Rows whose window lies wholly outside [0, Lk): O = 0, LSE = -inf (or the
// sink), never NaN, single pass and chunked.
TEST(Window, RowsThatSeeNoKey) {
  for (DType t : lt::all_dtypes())
    for (bool sinks : {false, true})
      for (bool chunked : {false, true}) {
        // Bottom-right, Lq > Lk: the diagonal of row i is i - 40; with at
        // most 2 keys right of it, rows 0..37 see nothing.
        Case c;
        c.Hq = 2, c.Hkv = 1, c.Lq = 60, c.Lk = 20, c.D = 16;
        c.dtype = t, c.sinks = sinks, c.window_left = 5, c.window_right = 2;
        c.seed = 31;
        longattn::AttentionOptions o;
        if (chunked) o.policy = lt::chunked_policy(8, 7);
        lt::CaseData d = lt::check_case(c, o);
        lt::expect_empty_rows(d, lt::first_rows(38));
      }
}

TEST(Window, ChunkedEqualsSinglePass) {
  std::uint64_t seed = 2100;
  for (DType t : lt::all_dtypes())
    for (const Window& w : {Window{0, 0}, Window{31, -1}, Window{100, 7}, Window{-1, 20}})
      for (bool causal : {false, true})
        for (bool top_left : {false, true}) {
          Case c;
          c.B = 1, c.Hq = 4, c.Hkv = 1, c.Lq = 200, c.Lk = 333, c.D = 32;
          c.dtype = t, c.causal = causal, c.causal_top_left = top_left, c.sinks = true;
          c.window_left = w.first, c.window_right = w.second;
          c.seed = ++seed;
          lt::CaseData single(c);
          longattn::AttentionOptions o;
          o.policy = lt::single_pass_policy();
          lt::run(single, o);
          auto r = lt::compare(single);
          EXPECT_TRUE(r.ok) << "single pass: " << r.message;
          for (const auto& [keys, rows] :
               {std::pair<std::int64_t, std::int64_t>{64, 0}, {40, 33}, {7, 5}}) {
            lt::CaseData chunked(c);
            o.policy = lt::chunked_policy(keys, rows);
            lt::run(chunked, o);
            r = lt::compare(chunked);
            EXPECT_TRUE(r.ok) << "chunks of " << keys << ": " << r.message;
            if (t == DType::float32) {
              EXPECT_LE(max_abs_diff(chunked.out.read(), single.out.read()), 2e-6) << c.name();
              EXPECT_LE(max_abs_diff(chunked.lse.read(), single.lse.read()), 2e-6) << c.name();
            }
          }
        }
}

// The window skips key tiles and rectangles; the same visibility as a dense
// boolean mask skips nothing. Both must give the reference's result, and
// (float32) the same numbers up to summation order.
TEST(Window, SkippingNeverChangesTheResult) {
  std::uint64_t seed = 2500;
  for (DType t : lt::all_dtypes())
    for (const Window& w : {Window{0, 0}, Window{70, -1}, Window{5, 130}, Window{129, 0}})
      for (bool causal : {false, true})
        for (bool chunked : {false, true}) {
          Case c;
          c.B = 1, c.Hq = 2, c.Hkv = 1, c.Lq = 150, c.Lk = 400, c.D = 32;
          c.dtype = t, c.causal = causal, c.window_left = w.first, c.window_right = w.second;
          c.seed = ++seed;
          longattn::AttentionOptions o;
          if (chunked) o.policy = lt::chunked_policy(64, 48);
          lt::CaseData win(c);
          lt::run(win, o);
          auto r = lt::compare(win);
          EXPECT_TRUE(r.ok) << r.message;

          Case m = c;
          m.window_left = m.window_right = -1;
          m.causal = false;
          m.mask = MaskKind::boolean;
          m.mask_broadcast = {true, true, false, false};
          lt::CaseData dense(m);
          ASSERT_EQ(dense.in.q, win.in.q);  // the same inputs (the mask is drawn last)
          ASSERT_EQ(dense.in.v, win.in.v);
          for (std::int64_t i = 0; i < c.Lq; ++i)
            for (std::int64_t j = 0; j < c.Lk; ++j) dense.set_mask(0, 0, i, j, sees(c, i, j));
          lt::run(dense, o);
          r = lt::compare(dense);
          EXPECT_TRUE(r.ok) << r.message;
          if (t == DType::float32) {
            EXPECT_LE(max_abs_diff(win.out.read(), dense.out.read()), 2e-6) << c.name();
            EXPECT_LE(max_abs_diff(win.lse.read(), dense.lse.read()), 2e-6) << c.name();
          }
        }
}

TEST(Window, ValuesBelowMinusOneAreRefused) {
  Case c;
  c.Lq = 4, c.Lk = 4, c.D = 8;
  lt::CaseData d(c);
  const auto t = d.host_views();
  for (bool left : {true, false}) {
    longattn::AttentionOptions o = d.options(t);
    (left ? o.window_left : o.window_right) = -2;
    try {
      longattn::attention(t.q, t.k, t.v, t.out, o);
      ADD_FAILURE() << "accepted a window of -2";
    } catch (const longattn::InvalidArgument& e) {
      const std::string want =
          std::string("[longattn::attention] ") + (left ? "window_left" : "window_right") + " = -2";
      EXPECT_EQ(std::string(e.what()).rfind(want, 0), 0u) << e.what();
    }
  }
}

// ---- planner ---------------------------------------------------------------

longattn::Plan plan_of(const Case& c, const longattn::Policy& pol, longattn::DeviceProfile prof) {
  longattn::AttentionOptions o;
  o.causal = c.causal;
  o.causal_align =
      c.causal_top_left ? longattn::CausalAlign::top_left : longattn::CausalAlign::bottom_right;
  o.window_left = c.window_left, o.window_right = c.window_right;
  o.policy = pol;
  o.profile = &prof;
  using longattn::contiguous;
  return longattn::plan_attention(contiguous(nullptr, c.dtype, {c.B, c.Hq, c.Lq, c.D}),
                                  contiguous(nullptr, c.dtype, {c.B, c.Hkv, c.Lk, c.D}),
                                  contiguous(nullptr, c.dtype, {c.B, c.Hkv, c.Lk, c.dv()}),
                                  contiguous(nullptr, c.dtype, {c.B, c.Hq, c.Lq, c.dv()}), o);
}

// Visible keys of row i, [first, end), counted independently.
std::pair<std::int64_t, std::int64_t> row_keys(const Case& c, std::int64_t i) {
  const std::int64_t d = c.causal_top_left ? i : i + c.Lk - c.Lq;
  std::int64_t lo = c.window_left >= 0 ? d - c.window_left : 0;
  std::int64_t hi = c.Lk;
  if (c.causal) hi = std::min(hi, d + 1);
  if (c.window_right >= 0) hi = std::min(hi, d + c.window_right + 1);
  lo = std::clamp<std::int64_t>(lo, 0, c.Lk);
  hi = std::clamp<std::int64_t>(hi, lo, c.Lk);
  return {lo, hi};
}

// Every group's chunks tile one key range that holds every key its rows see
// and starts less than one key tile before the first row's first key; the
// plan's FLOPs are exactly those of the visible pairs.
void check_window_plan(const Case& c, const longattn::Plan& p, std::int64_t key_tile) {
  double pairs = 0;
  for (std::int64_t i = 0; i < c.Lq; ++i) {
    const auto [lo, hi] = row_keys(c, i);
    pairs += static_cast<double>(hi - lo);
  }
  const double per_pair = 2.0 * static_cast<double>(c.B * c.Hq * (c.D + c.dv()));
  if (c.B * c.Lq == 0) return;
  EXPECT_NEAR(p.total_flops, per_pair * pairs, 1e-9 * per_pair * pairs + 0.5) << c.name();
  // The route's one single pass over [0, Lq) x [0, Lk) is left to the
  // kernels' skipping; every chunked group is checked.
  if (!p.chunked) return;
  std::int64_t next_k = -1, group_q0 = -1, group_q1 = -1;
  auto close = [&] {
    if (group_q0 < 0) return;
    EXPECT_EQ(next_k, row_keys(c, group_q1 - 1).second)
        << c.name() << " group [" << group_q0 << ", " << group_q1 << ")";
  };
  for (const auto& s : p.submissions)
    for (const auto& d : s.dispatches) {
      const auto& r = d.rect;
      const bool starts = d.mode == longattn::Mode::single_pass || d.mode == longattn::Mode::init;
      if (starts) {
        close();
        group_q0 = r.q0, group_q1 = r.q1;
        const std::int64_t first = row_keys(c, r.q0).first;
        EXPECT_LE(r.k0, first) << c.name() << " q0 " << r.q0;
        EXPECT_GT(r.k0, first - key_tile) << c.name() << " q0 " << r.q0;
      } else {
        EXPECT_EQ(r.k0, next_k) << c.name();
      }
      next_k = r.k1;
      EXPECT_LE(r.k1, row_keys(c, r.q1 - 1).second) << c.name();
    }
  close();
}

TEST(Window, LongSlidingWindowPlanCostsLqTimesWindow) {
  // Mistral-style: causal, 4096 keys back (the diagonal included), over
  // 1M tokens, under a 100 ms budget.
  Case c;
  c.B = 1, c.Hq = 8, c.Hkv = 2, c.Lq = c.Lk = std::int64_t{1} << 20, c.D = 128;
  c.dtype = DType::bfloat16, c.causal = true, c.window_left = 4095;
  longattn::DeviceProfile prof;
  prof.default_gflops = 2000;
  longattn::Policy pol;
  pol.budget_ms = 100;
  const longattn::Plan p = plan_of(c, pol, prof);
  ASSERT_TRUE(p.chunked);
  const double lq = static_cast<double>(c.Lq), w = 4096;
  const double pairs = (lq - w) * w + w * (w + 1) / 2;  // rows under 4096 see i + 1 keys
  EXPECT_NEAR(p.total_flops, 2.0 * 8 * 256 * pairs, 1.0);
  EXPECT_LT(p.total_flops, 1.01 * 2.0 * 8 * 256 * lq * w);
  double dispatched = 0;
  for (const auto& s : p.submissions)
    for (const auto& d : s.dispatches) {
      dispatched += d.flops;
      // No rectangle reaches further left of its first row's window than
      // one key tile (the planner keeps the kernels' tile grid).
      EXPECT_GE(d.rect.k0, d.rect.q0 - 4095 - prof.key_tile) << d.rect.q0;
    }
  EXPECT_NEAR(dispatched, p.total_flops, 1e-6 * p.total_flops);
  // A budget of 100 ms at 2 TFLOP/s: the call is 1M x 4K pairs, ~17 s of
  // work in about as many submissions as that needs, not the ~1M x 1M / 2
  // of causal alone.
  EXPECT_LT(p.predicted_ms, 1.5 * p.total_flops / 2e9 + 1000);
}

TEST(Window, PlansCoverExactlyTheVisiblePairs) {
  std::mt19937_64 g(99);
  auto pick = [&](std::int64_t lo, std::int64_t hi) {
    return std::uniform_int_distribution<std::int64_t>(lo, hi)(g);
  };
  for (int n = 0; n < 300; ++n) {
    Case c;
    c.B = 1, c.Hq = pick(1, 4), c.Hkv = 1, c.D = 64;
    c.Lq = pick(1, 3000), c.Lk = pick(0, 3000);
    c.causal = pick(0, 1) == 1, c.causal_top_left = pick(0, 1) == 1;
    c.window_left = pick(0, 3) == 0 ? -1 : pick(0, 700);
    c.window_right = pick(0, 3) == 0 ? -1 : pick(0, 700);
    longattn::DeviceProfile prof;
    prof.default_gflops = 1;
    prof.key_tile = 64;
    longattn::Policy pol;
    const int mode = static_cast<int>(pick(0, 2));
    if (mode == 0) pol.budget_ms = 0.5 + static_cast<double>(pick(0, 20));
    if (mode == 1) pol = lt::chunked_policy(pick(1, 400), pick(0, 1) ? pick(1, 300) : 0);
    if (mode == 2) pol = lt::single_pass_policy();
    check_window_plan(c, plan_of(c, pol, prof), prof.key_tile);
  }
}

}  // namespace
