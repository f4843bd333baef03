// NaN inputs, logits around +-1e4, and -inf that must not become NaN.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "test_common.hpp"

namespace {

using longattn::DType;
using lt::Case;

const double kNaN = std::numeric_limits<double>::quiet_NaN();

TEST(SpecialValues, NanInQueryPoisonsOnlyThatRow) {
  for (DType t : lt::all_dtypes())
    for (bool causal : {false, true}) {
      Case c;
      c.B = 2, c.Hq = 4, c.Hkv = 2, c.Lq = 50, c.Lk = 130, c.D = 32;
      c.dtype = t, c.causal = causal;
      lt::CaseData d(c);
      d.set_q(1, 2, 7, 5, kNaN);
      d.set_q(0, 0, 49, 0, kNaN);
      lt::run(d);
      // The reference makes exactly those two rows NaN (O and LSE); compare()
      // demands NaN exactly where the reference has it, finite elsewhere.
      const auto r = lt::compare(d);
      EXPECT_TRUE(r.ok) << r.message;
      EXPECT_TRUE(std::isnan(d.expected().lse[(1 * 4 + 2) * 50 + 7]));
    }
}

TEST(SpecialValues, NanInKeyPoisonsTheRowsThatSeeIt) {
  for (DType t : lt::all_dtypes())
    for (bool causal : {false, true}) {
      Case c;
      c.B = 2, c.Hq = 4, c.Hkv = 2, c.Lq = 50, c.Lk = 130, c.D = 32;
      c.dtype = t, c.causal = causal;
      lt::CaseData d(c);
      // Key 100 of (b=1, kv head 0): with causal, query rows i < 20 do not
      // see it (i + 80 < 100) and stay finite; query heads 2, 3 and batch 0
      // never read it.
      d.set_k(1, 0, 100, 3, kNaN);
      lt::run(d);
      const auto r = lt::compare(d);
      EXPECT_TRUE(r.ok) << r.message;
    }
}

TEST(SpecialValues, NanInValue) {
  // A NaN in v[j][d] makes column d NaN in every row that sees key j. The
  // library documents that it may also reach rows that mask key j out, and
  // possibly the rest of those rows, but only in the same (batch, KV head).
  for (DType t : lt::all_dtypes()) {
    Case c;
    c.B = 2, c.Hq = 4, c.Hkv = 2, c.Lq = 50, c.Lk = 130, c.D = 32, c.Dv = 16;
    c.dtype = t, c.causal = true;
    lt::CaseData d(c);
    d.set_v(1, 1, 100, 3, kNaN);
    lt::run(d);
    const auto& want = d.expected();
    const auto got = d.out.read();
    const auto lse = d.lse.read();
    std::vector<double> got_ok, want_ok;  // entries that must match
    for (std::int64_t b = 0; b < c.B; ++b)
      for (std::int64_t h = 0; h < c.Hq; ++h)
        for (std::int64_t i = 0; i < c.Lq; ++i) {
          const bool same_kv = b == 1 && h / 2 == 1;
          const std::size_t row = static_cast<std::size_t>((b * c.Hq + h) * c.Lq + i);
          const bool sees = same_kv && i + (c.Lk - c.Lq) >= 100;
          EXPECT_TRUE(std::isfinite(lse[row])) << "LSE does not read v, row " << row;
          for (std::int64_t x = 0; x < c.Dv; ++x) {
            const std::size_t e =
                row * static_cast<std::size_t>(c.Dv) + static_cast<std::size_t>(x);
            if (sees && x == 3) {
              EXPECT_TRUE(std::isnan(got[e])) << c.name() << " row " << row;
            } else if (!same_kv) {
              got_ok.push_back(got[e]);
              want_ok.push_back(want.o[e]);
            } else if (!std::isnan(got[e])) {
              got_ok.push_back(got[e]);
              want_ok.push_back(want.o[e]);
            }
          }
        }
    const auto m = lt::metric(got_ok, want_ok);
    EXPECT_LE(m.err, lt::tolerance(t)) << c.name() << ": " << m.describe_worst(got_ok, want_ok);
  }
}

// Logits near +-1e4: q and k hold small integers plus one entry of +-100,
// and scale = 1, so every logit is an integer that float32 computes exactly
// and the test measures the softmax, not dot-product rounding.
lt::CaseData big_logits_case(DType t, bool causal, int sign_mode, std::uint64_t seed) {
  Case c;
  c.B = 1, c.Hq = 2, c.Hkv = 1, c.Lq = 40, c.Lk = 150, c.D = 32;
  c.dtype = t, c.causal = causal, c.scale = 1.0, c.sinks = sign_mode == 2;
  lt::CaseData d(c);
  std::mt19937_64 rng(seed);
  const double small[4] = {-2, -1, 1, 2};
  for (std::int64_t h = 0; h < c.Hq; ++h)
    for (std::int64_t i = 0; i < c.Lq; ++i)
      for (std::int64_t x = 0; x < c.D; ++x) d.set_q(0, h, i, x, x == 0 ? 100.0 : small[rng() % 4]);
  for (std::int64_t j = 0; j < c.Lk; ++j)
    for (std::int64_t x = 0; x < c.D; ++x) {
      double big = 100.0;                                 // sign_mode 0: all logits ~ +1e4
      if (sign_mode == 1) big = -100.0;                   // all ~ -1e4
      if (sign_mode == 2) big = j % 3 == 0 ? 100 : -100;  // mixed
      d.set_k(0, 0, j, x, x == 0 ? big : small[rng() % 4]);
    }
  if (c.sinks) {
    d.set_sink(0, 9990.0);  // a sink that competes with the +1e4 logits
    d.set_sink(1, -20.0);   // a sink that vanishes next to them
  }
  return d;
}

TEST(SpecialValues, LogitsAroundTenThousand) {
  for (DType t : lt::all_dtypes())
    for (bool causal : {false, true})
      for (int sign_mode : {0, 1, 2}) {
        lt::CaseData d = big_logits_case(t, causal, sign_mode, 11 + sign_mode);
        lt::run(d);
        // Conditioning, not slack: a float32 dot product of magnitude |s|
        // carries an absolute error of about sqrt(D) * |s| * 2^-24 (the
        // running sum of D terms is rounded at |s|'s ulp), and that error goes
        // straight into exp(). Any float32 kernel has it (observed on the CPU
        // backend: 1.2e-3 at |s| ~ 1e4). Garbage (overflow, NaN, a uniform
        // softmax) is still far outside this.
        const double max_logit = 10'124.0;  // 100 * 100 + 31 * 2 * 2
        const double tol = lt::tolerance(t) + 2.0 * std::sqrt(32.0) * max_logit * 0x1p-24;
        const auto r = lt::compare(d, tol);
        EXPECT_TRUE(r.ok) << "sign_mode " << sign_mode << ": " << r.message;
        for (double x : d.lse.read()) EXPECT_GT(std::abs(x), 9000.0);
      }
}

TEST(SpecialValues, InfinityInAdditiveMaskNeverMakesNaN) {
  // -inf on every key but one, and on every key of some rows.
  for (DType t : lt::all_dtypes()) {
    Case c;
    c.B = 1, c.Hq = 1, c.Hkv = 1, c.Lq = 20, c.Lk = 140, c.D = 16;
    c.dtype = t, c.mask = lt::MaskKind::additive, c.mask_drop = 1.0;
    c.mask_broadcast = {true, true, false, false};
    lt::CaseData d(c);
    for (std::int64_t i = 0; i < c.Lq; i += 2) d.set_mask(0, 0, i, (i * 7) % c.Lk, 0.5);
    lt::run(d);
    const auto r = lt::compare(d);
    EXPECT_TRUE(r.ok) << r.message;
    const auto o = d.out.read();
    for (double x : o) EXPECT_FALSE(std::isnan(x));
  }
}

}  // namespace
