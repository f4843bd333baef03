// The benchmark's case list (bench/cases.hpp) checked against the float64
// reference, so every shape we publish a speed for is also a shape we test.
// The full-size cases take minutes in float64; here Lq and Lk are divided
// by 16 (64 in sanitizer builds) while the heads, GQA ratio, head dim, mask
// and dtype stay as benchmarked. The FLOP helper is checked against a
// direct count.
#include <gtest/gtest.h>

#include "bench/cases.hpp"
#include "test_common.hpp"

namespace {

TEST(BenchCases, MatchTheReferenceAtReducedLength) {
  const std::int64_t shrink = lt::small_tests() ? 64 : 16;
  for (const auto& bc : longattn::bench::kCpuCases) {
    lt::Case c;
    c.B = bc.B, c.Hq = bc.Hq, c.Hkv = bc.Hkv, c.D = bc.D;
    c.Lq = bc.Lq / shrink, c.Lk = bc.Lk / shrink;
    c.causal = bc.causal, c.dtype = bc.dtype;
    c.seed = 99;
    SCOPED_TRACE(std::string(bc.name));
    lt::check_case(c);
  }
}

TEST(BenchCases, FlopCountMatchesADirectCount) {
  for (bool causal : {false, true})
    for (std::int64_t lq : {1, 7, 64, 100})
      for (std::int64_t lk : {0, 1, 50, 100, 129}) {
        double pairs = 0;
        for (std::int64_t i = 0; i < lq; ++i)
          pairs += causal ? static_cast<double>(std::clamp<std::int64_t>(i + lk - lq + 1, 0, lk))
                          : static_cast<double>(lk);
        EXPECT_EQ(longattn::bench::visible_pairs(lq, lk, causal), pairs)
            << lq << "x" << lk << " " << causal;
        EXPECT_EQ(longattn::bench::attention_flops(2, 3, 64, 32, lq, lk, causal),
                  2.0 * 6 * 96 * pairs);
      }
}

}  // namespace
