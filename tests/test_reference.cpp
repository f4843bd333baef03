// Checks the oracle itself: the dtype conversions of tests/support against
// known bit patterns, and the float64 reference against results worked out by
// hand. If these fail, nothing else in the suite means anything.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "reference.hpp"
#include "support.hpp"

namespace {

const double kInf = std::numeric_limits<double>::infinity();

TEST(Conversions, HalfKnownValues) {
  EXPECT_EQ(lt::float_to_half(1.0f), 0x3C00);
  EXPECT_EQ(lt::float_to_half(-2.0f), 0xC000);
  EXPECT_EQ(lt::float_to_half(65504.0f), 0x7BFF);
  EXPECT_EQ(lt::float_to_half(65519.0f), 0x7BFF);  // below the halfway point
  EXPECT_EQ(lt::float_to_half(65520.0f), 0x7C00);  // halfway, ties to even = inf
  EXPECT_EQ(lt::float_to_half(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(lt::float_to_half(std::ldexp(1.0f, -25)), 0x0000);         // tie -> even (0)
  EXPECT_EQ(lt::float_to_half(std::ldexp(3.0f, -25)), 0x0002);         // tie -> even (2)
  EXPECT_EQ(lt::float_to_half(1.0f + std::ldexp(1.0f, -11)), 0x3C00);  // tie -> even
  EXPECT_EQ(lt::float_to_half(1.0f + std::ldexp(3.0f, -11)), 0x3C02);  // tie -> even
  EXPECT_EQ(lt::float_to_half(std::ldexp(1023.0f, -24) + std::ldexp(1.0f, -25)),
            0x0400);  // the largest subnormal rounds up into the smallest normal
  EXPECT_EQ(lt::float_to_half(std::numeric_limits<float>::infinity()), 0x7C00);
  EXPECT_TRUE(std::isnan(lt::half_to_float(lt::float_to_half(std::nanf("")))));
  EXPECT_EQ(lt::half_to_float(0x3555), 0.333251953125f);
}

TEST(Conversions, HalfRoundTripsEveryValue) {
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const auto u = static_cast<std::uint16_t>(h);
    const float f = lt::half_to_float(u);
    if (std::isnan(f)) continue;
    ASSERT_EQ(lt::float_to_half(f), u) << std::hex << h;
  }
}

TEST(Conversions, Bf16KnownValuesAndRoundTrip) {
  EXPECT_EQ(lt::float_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(lt::float_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3F80);  // tie -> even
  EXPECT_EQ(lt::float_to_bf16(1.0f + std::ldexp(3.0f, -8)), 0x3F82);  // tie -> even
  EXPECT_EQ(lt::float_to_bf16(1.0f + std::ldexp(1.0f, -9)), 0x3F80);
  EXPECT_EQ(lt::float_to_bf16(std::numeric_limits<float>::max()), 0x7F80);  // rounds to inf
  EXPECT_TRUE(std::isnan(lt::bf16_to_float(lt::float_to_bf16(std::nanf("")))));
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const auto u = static_cast<std::uint16_t>(h);
    const float f = lt::bf16_to_float(u);
    if (std::isnan(f)) continue;
    ASSERT_EQ(lt::float_to_bf16(f), u) << std::hex << h;
  }
}

TEST(Metric, OneNumberAndNonFiniteRules) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  auto m = lt::metric({1.0, 2.5, -kInf, nan}, {1.0, 2.0, -kInf, nan});
  EXPECT_DOUBLE_EQ(m.err, 0.5 / 2.0);  // scale = max |finite want| = 2
  EXPECT_EQ(m.nonfinite_mismatches, 0);
  EXPECT_TRUE(std::isinf(lt::metric({0.0}, {nan}).err));
  EXPECT_TRUE(std::isinf(lt::metric({nan}, {0.0}).err));
  EXPECT_TRUE(std::isinf(lt::metric({kInf}, {-kInf}).err));
  // Each row is judged at its own scale: the small row's 50% error is not
  // hidden by the large row, and an all-zero output fails a row of 0.004.
  EXPECT_DOUBLE_EQ(lt::metric({0.25, 0.5, 10.0, 10.0}, {0.5, 0.5, 10.0, 10.0}, 2).err, 0.5);
  EXPECT_DOUBLE_EQ(lt::metric({0.0, 0.0}, {0.004, -0.002}, 2).err, 1.0);
  // A row of zeros is judged at the floor: only (near-)zeros pass.
  EXPECT_LE(lt::metric({0.0, 0.0}, {0.0, 0.0}, 2).err, 0.0);
  EXPECT_GT(lt::metric({1e-3, 0.0}, {0.0, 0.0}, 2).err, 1.0);
  // LSE: relative above 1, absolute (nats) below.
  EXPECT_NEAR(lt::lse_metric({16.0 + 16e-5}, {16.0}).err, 1e-5, 1e-12);
  EXPECT_NEAR(lt::lse_metric({0.5 + 1e-5}, {0.5}).err, 1e-5, 1e-12);
  EXPECT_TRUE(std::isinf(lt::lse_metric({0.0}, {-kInf}).err));
}

ref::Inputs tiny(std::int64_t Lq, std::int64_t Lk) {
  ref::Inputs in;
  in.Lq = Lq, in.Lk = Lk, in.D = 1, in.Dv = 1;
  in.q.assign(static_cast<std::size_t>(Lq), 1.0);
  in.k.resize(static_cast<std::size_t>(Lk));
  in.v.resize(static_cast<std::size_t>(Lk));
  for (std::int64_t j = 0; j < Lk; ++j) {
    in.k[static_cast<std::size_t>(j)] = static_cast<double>(j);  // score of key j = j
    in.v[static_cast<std::size_t>(j)] = 10.0 * static_cast<double>(j + 1);
  }
  return in;
}

TEST(Reference, HandComputedSoftmax) {
  ref::Inputs in = tiny(1, 2);  // scores 0, 1; values 10, 20
  const auto out = ref::attention(in);
  const double e = std::exp(1.0);
  EXPECT_NEAR(out.o[0], (10.0 + 20.0 * e) / (1.0 + e), 1e-12);
  EXPECT_NEAR(out.lse[0], std::log(1.0 + e), 1e-12);

  in.sinks = {2.0};
  const auto s = ref::attention(in);
  const double e2 = std::exp(2.0);
  EXPECT_NEAR(s.o[0], (10.0 + 20.0 * e) / (1.0 + e + e2), 1e-12);
  EXPECT_NEAR(s.lse[0], std::log(1.0 + e + e2), 1e-12);
}

TEST(Reference, CausalIsBottomRightAligned) {
  ref::Inputs in = tiny(3, 5);  // query i sees keys j <= i + 2
  in.causal = true;
  in.q = {0.0, 0.0, 0.0};  // equal scores: O is the mean of the visible v
  const auto out = ref::attention(in);
  EXPECT_NEAR(out.o[0], (10 + 20 + 30) / 3.0, 1e-12);
  EXPECT_NEAR(out.o[2], (10 + 20 + 30 + 40 + 50) / 5.0, 1e-12);
  EXPECT_NEAR(out.lse[1], std::log(4.0), 1e-12);

  ref::Inputs wide = tiny(4, 2);  // Lq > Lk: rows 0, 1 see no key
  wide.causal = true;
  const auto w = ref::attention(wide);
  EXPECT_EQ(w.o[0], 0.0);
  EXPECT_EQ(w.lse[0], -kInf);
  EXPECT_EQ(w.lse[1], -kInf);
  EXPECT_EQ(w.o[2], 10.0);
  EXPECT_NEAR(w.lse[2], 0.0, 1e-15);
}

TEST(Reference, EmptyRowsAndSinks) {
  ref::Inputs in = tiny(2, 0);
  auto out = ref::attention(in);
  EXPECT_EQ(out.o[1], 0.0);
  EXPECT_EQ(out.lse[1], -kInf);
  in.sinks = {0.75};
  out = ref::attention(in);
  EXPECT_EQ(out.o[1], 0.0);
  EXPECT_EQ(out.lse[1], 0.75);
}

TEST(Reference, MasksBroadcastAndCombineWithCausal) {
  ref::Inputs in = tiny(2, 3);
  in.q = {0.0, 0.0};
  in.mask_type = ref::MaskType::boolean;
  in.mask_shape = {1, 1, 1, 3};  // one key row shared by every query
  in.mask = {1, 0, 1};
  auto out = ref::attention(in);
  EXPECT_NEAR(out.o[0], 20.0, 1e-12);  // mean of 10 and 30
  in.causal = true;                    // row 0 sees keys 0, 1; key 1 is masked
  out = ref::attention(in);
  EXPECT_NEAR(out.o[0], 10.0, 1e-12);
  EXPECT_NEAR(out.o[1], 20.0, 1e-12);

  in.causal = false;
  in.mask_type = ref::MaskType::additive;
  in.mask_shape = {1, 1, 2, 1};  // one value per query row, broadcast over keys
  in.mask = {-kInf, std::log(2.0)};
  out = ref::attention(in);
  EXPECT_EQ(out.lse[0], -kInf);
  EXPECT_NEAR(out.lse[1], std::log(3.0 * 2.0), 1e-12);
}

TEST(Reference, GqaReadsTheRightKvHead) {
  ref::Inputs in;
  in.Hq = 4, in.Hkv = 2, in.Lq = 1, in.Lk = 1, in.D = 1, in.Dv = 1;
  in.q = {1, 1, 1, 1};
  in.k = {1, 1};
  in.v = {5, 7};  // KV head 0 -> query heads 0, 1; KV head 1 -> 2, 3
  const auto out = ref::attention(in);
  EXPECT_EQ(out.o[0], 5.0);
  EXPECT_EQ(out.o[1], 5.0);
  EXPECT_EQ(out.o[2], 7.0);
  EXPECT_EQ(out.o[3], 7.0);
}

TEST(Reference, NanPropagatesTheIeeeWay) {
  ref::Inputs in = tiny(2, 3);
  in.q[0] = std::nan("");
  auto out = ref::attention(in);
  EXPECT_TRUE(std::isnan(out.o[0]));
  EXPECT_TRUE(std::isnan(out.lse[0]));
  EXPECT_TRUE(std::isfinite(out.o[1]));
  in.q[0] = 1.0;
  in.causal = true;  // row 0 sees keys 0, 1; row 1 sees all
  in.k[2] = std::nan("");
  out = ref::attention(in);
  EXPECT_TRUE(std::isfinite(out.o[0]));
  EXPECT_TRUE(std::isnan(out.o[1]));
}

TEST(Support, CaseDataMatchesBuffersInEveryLayout) {
  for (lt::Layout layout : {lt::Layout::bhld, lt::Layout::blhd, lt::Layout::cache_slice,
                            lt::Layout::cache_slice_blhd}) {
    for (longattn::DType t : {longattn::DType::float32, longattn::DType::bfloat16}) {
      lt::Case c;
      c.B = 2, c.Hq = 4, c.Hkv = 2, c.Lq = 3, c.Lk = 5, c.D = 4, c.Dv = 6;
      c.dtype = t;
      c.layout = layout;
      lt::CaseData d(c);
      EXPECT_EQ(d.q.read(), d.in.q) << lt::to_string(layout);
      EXPECT_EQ(d.k.read(), d.in.k) << lt::to_string(layout);
      EXPECT_EQ(d.v.read(), d.in.v) << lt::to_string(layout);
      for (double x : d.in.k) EXPECT_EQ(lt::round_to(t, x), x);
      for (double x : d.in.q) EXPECT_NE(x, 0.0);
      EXPECT_EQ(d.out.guard_damage(), 0);
      for (double x : d.out.read()) EXPECT_TRUE(std::isnan(x));
      d.set_k(1, 1, 4, 3, 0.1);
      EXPECT_EQ(d.k.read(), d.in.k);
    }
  }
}

}  // namespace
