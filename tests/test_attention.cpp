// Shapes, head dims, GQA ratios, dtypes and layouts against the reference.
// CPU tiles are 64 keys x 48 queries, so lengths straddle 48 and 64.
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "test_common.hpp"

namespace {

using longattn::DType;
using lt::Case;

TEST(Attention, LengthsAroundTiles) {
  const std::vector<std::int64_t> lq{1, 7, 47, 48, 49, 97};
  const std::vector<std::int64_t> lk{1, 13, 47, 48, 49, 63, 64, 65, 127, 129};
  std::uint64_t seed = 100;
  for (DType t : lt::all_dtypes())
    for (std::int64_t Lq : lq)
      for (std::int64_t Lk : lk)
        for (bool causal : {false, true}) {
          Case c;
          c.B = 2, c.Hq = 2, c.Hkv = 1, c.Lq = Lq, c.Lk = Lk, c.D = 40, c.Dv = 24;
          c.dtype = t;
          c.causal = causal;
          c.seed = ++seed;
          lt::check_case(c);
        }
}

TEST(Attention, CausalWithMoreQueriesThanKeys) {
  for (DType t : lt::all_dtypes())
    for (auto [Lq, Lk] :
         {std::pair<std::int64_t, std::int64_t>{5, 3}, {49, 1}, {130, 64}, {97, 48}, {64, 63}}) {
      Case c;
      c.Hq = 2, c.Hkv = 2, c.Lq = Lq, c.Lk = Lk, c.D = 32;
      c.dtype = t;
      c.causal = true;
      c.seed = static_cast<std::uint64_t>(Lq * 1000 + Lk);
      lt::CaseData d = lt::check_case(c);
      // The first Lq - Lk rows see no key: exactly O = 0, LSE = -inf.
      const auto o = d.out.read();
      const auto lse = d.lse.read();
      for (std::int64_t h = 0; h < c.Hq; ++h)
        for (std::int64_t i = 0; i < Lq - Lk; ++i) {
          EXPECT_EQ(lse[static_cast<std::size_t>(h * Lq + i)],
                    -std::numeric_limits<double>::infinity());
          for (std::int64_t x = 0; x < c.D; ++x)
            EXPECT_EQ(o[static_cast<std::size_t>((h * Lq + i) * c.D + x)], 0.0);
        }
    }
}

TEST(Attention, NoKeysGivesZeroAndMinusInfinity) {
  for (DType t : lt::all_dtypes())
    for (bool causal : {false, true})
      for (bool sinks : {false, true}) {
        Case c;
        c.B = 2, c.Hq = 4, c.Hkv = 2, c.Lq = 5, c.Lk = 0, c.D = 16;
        c.dtype = t, c.causal = causal, c.sinks = sinks;
        lt::CaseData d = lt::check_case(c);
        const auto o = d.out.read();
        const auto lse = d.lse.read();
        for (double x : o) EXPECT_EQ(x, 0.0);
        for (std::size_t r = 0; r < lse.size(); ++r) {
          const double want = sinks ? d.in.sinks[(r / 5) % 4] : -INFINITY;
          EXPECT_EQ(lse[r], want) << c.name() << " row " << r;
        }
      }
}

TEST(Attention, GqaRatios) {
  for (DType t : lt::all_dtypes())
    for (std::int64_t ratio : {1, 2, 4, 8, 32})
      for (bool causal : {false, true}) {
        Case c;
        c.B = 1, c.Hkv = ratio == 32 ? 1 : 2, c.Hq = c.Hkv * ratio;
        c.Lq = ratio >= 8 ? 9 : 33, c.Lk = 70, c.D = 32;
        c.dtype = t, c.causal = causal;
        c.seed = static_cast<std::uint64_t>(ratio) * 7 + causal;
        lt::check_case(c);
      }
}

TEST(Attention, HeadDims) {
  for (DType t : lt::all_dtypes())
    for (std::int64_t D : {32, 64, 72, 80, 96, 128, 192, 256}) {
      Case c;
      c.B = 1, c.Hq = 2, c.Hkv = 1, c.Lq = 19, c.Lk = 67, c.D = D;
      c.dtype = t, c.causal = D % 64 == 0;
      c.seed = static_cast<std::uint64_t>(D);
      lt::check_case(c);
    }
}

TEST(Attention, ValueDimDiffersFromKeyDim) {
  const std::vector<std::pair<std::int64_t, std::int64_t>> dims{
      {1, 1}, {3, 5}, {64, 128}, {128, 64}, {32, 256}, {256, 32}, {72, 80}, {192, 128}, {17, 256}};
  for (DType t : lt::all_dtypes())
    for (auto [D, Dv] : dims) {
      Case c;
      c.B = 2, c.Hq = 2, c.Hkv = 2, c.Lq = 11, c.Lk = 50, c.D = D, c.Dv = Dv;
      c.dtype = t, c.causal = true;
      c.seed = static_cast<std::uint64_t>(D * 1000 + Dv);
      lt::check_case(c);
    }
}

TEST(Attention, Layouts) {
  for (DType t : lt::all_dtypes())
    for (lt::Layout layout :
         {lt::Layout::blhd, lt::Layout::cache_slice, lt::Layout::cache_slice_blhd})
      for (bool causal : {false, true}) {
        Case c;
        c.B = 2, c.Hq = 4, c.Hkv = 2, c.Lq = 13, c.Lk = 77, c.D = 64, c.Dv = 48;
        c.dtype = t, c.causal = causal, c.layout = layout, c.sinks = causal;
        c.seed = 3 + static_cast<std::uint64_t>(layout);
        lt::check_case(c);
      }
}

TEST(Attention, LayoutHelperMatchesOwnStrides) {
  // bhld_from_blhd must describe [B, L, H, D] memory as a logical [B, H, L, D].
  float dummy = 0;
  const auto v = longattn::bhld_from_blhd(&dummy, DType::float32, 2, 5, 3, 4);
  EXPECT_EQ(v.rank, 4);
  EXPECT_EQ(v.shape, (std::array<std::int64_t, 4>{2, 3, 5, 4}));
  EXPECT_EQ(v.strides, (std::array<std::int64_t, 4>{5 * 3 * 4, 4, 3 * 4, 1}));
}

TEST(Attention, ScaleOption) {
  for (double scale : {0.01, 0.3, 1.0, 2.5}) {
    Case c;
    c.Hq = 2, c.Hkv = 1, c.Lq = 21, c.Lk = 90, c.D = 16, c.scale = scale;
    c.seed = static_cast<std::uint64_t>(scale * 100);
    lt::check_case(c);
  }
}

TEST(Attention, ThreadCounts) {
  for (int threads : {1, 2, 3, 7}) {
    Case c;
    c.B = 3, c.Hq = 4, c.Hkv = 2, c.Lq = 50, c.Lk = 130, c.D = 64;
    c.causal = true;
    c.seed = static_cast<std::uint64_t>(threads);
    longattn::AttentionOptions o;
    o.threads = threads;
    lt::check_case(c, o);
  }
}

TEST(Attention, WithoutLseOutput) {
  Case c;
  c.B = 2, c.Hq = 2, c.Hkv = 1, c.Lq = 10, c.Lk = 100, c.D = 32;
  c.lse = false;
  lt::check_case(c);
}

TEST(Attention, SinksAcrossShapes) {
  for (DType t : lt::all_dtypes())
    for (bool causal : {false, true})
      for (std::int64_t Lk : {1, 64, 65, 200}) {
        Case c;
        c.B = 2, c.Hq = 4, c.Hkv = 1, c.Lq = 17, c.Lk = Lk, c.D = 32;
        c.dtype = t, c.causal = causal, c.sinks = true;
        c.seed = static_cast<std::uint64_t>(Lk) + causal;
        lt::check_case(c);
      }
}

TEST(Attention, RunTwiceIsBitIdentical) {
  // Same inputs, two runs (chunked, with another problem run in between to
  // leave different data in any state the backend keeps): the output and LSE
  // bytes are identical, so nothing reads uninitialised or left-over memory.
  // The outputs are NaN-filled before each run (reset_outputs).
  Case c;
  c.B = 2, c.Hq = 4, c.Hkv = 2, c.Lq = 33, c.Lk = 150, c.D = 64, c.causal = true;
  longattn::AttentionOptions o;
  o.policy = lt::chunked_policy(40, 16);
  lt::CaseData d = lt::check_case(c, o);
  const std::vector<std::byte> first = d.out.bytes, first_lse = d.lse.bytes;
  Case other = c;
  other.Lq = 70, other.Lk = 301, other.sinks = true, other.seed = 99;
  lt::check_case(other, o);
  d.reset_outputs();
  lt::run(d, o);
  EXPECT_TRUE(d.out.bytes == first) << "the second run's O differs in its bits";
  EXPECT_TRUE(d.lse.bytes == first_lse) << "the second run's LSE differs in its bits";
}

TEST(Attention, EverySeedMatchesTheReference) {
  // Different seeds draw different inputs (so each one is a case of its own:
  // their outputs differ), and each matches the reference.
  std::vector<std::vector<double>> outs;
  for (std::uint64_t seed : {1u, 2u, 3u, 1000003u}) {
    Case c;
    c.B = 2, c.Hq = 4, c.Hkv = 2, c.Lq = 33, c.Lk = 150, c.D = 64, c.causal = true;
    c.seed = seed;
    outs.push_back(lt::check_case(c).out.read());
    for (std::size_t i = 0; i + 1 < outs.size(); ++i)
      EXPECT_NE(outs[i], outs.back()) << "seed " << seed << " gave the output of an earlier seed";
  }
}

}  // namespace
