// The benchmark's case list (bench/cases.hpp) checked against the float64
// reference, so every shape we publish a speed for is also a shape we test.
// The full-size cases take minutes in float64; here Lq and Lk are divided
// by 16 (64 in sanitizer builds) while the heads, GQA ratio, head dim, mask
// and dtype stay as benchmarked. The FLOP count is checked against a
// brute-force count.
#include <gtest/gtest.h>

#include <algorithm>

#include "bench/cases.hpp"
#include "test_common.hpp"

namespace {

TEST(BenchCases, MatchTheReferenceAtReducedLength) {
  const std::int64_t shrink = lt::small_tests() ? 64 : 16;
  for (const auto& bc : longattn::bench::kCpuCases) {
    lt::Case c;
    c.B = bc.B, c.Hq = bc.Hq, c.Hkv = bc.Hkv, c.D = bc.D;
    c.Lq = std::max<std::int64_t>(1, bc.Lq / shrink), c.Lk = bc.Lk / shrink;
    c.causal = bc.causal, c.dtype = bc.dtype;
    c.seed = 99;
    SCOPED_TRACE(std::string(bc.name));
    lt::check_case(c);
  }
}

// Visible (query, key) pairs counted one by one: query i sees key j iff
// j <= i + (Lk - Lq) (bottom-right causal).
double brute_force_pairs(std::int64_t lq, std::int64_t lk, bool causal) {
  double pairs = 0;
  for (std::int64_t i = 0; i < lq; ++i)
    for (std::int64_t j = 0; j < lk; ++j)
      if (!causal || j <= i + (lk - lq)) pairs += 1;
  return pairs;
}

// longattn::attention_flops, the count behind every TFLOP/s figure, and the
// benchmarks' use of it (argument order included).
TEST(BenchCases, FlopCountMatchesABruteForceCount) {
  for (bool causal : {false, true})
    for (std::int64_t lq : {0, 1, 7, 64, 100})
      for (std::int64_t lk : {0, 1, 50, 100, 129})
        EXPECT_EQ(longattn::attention_flops(2, 3, lq, lk, 64, 32, causal),
                  2.0 * 6 * 96 * brute_force_pairs(lq, lk, causal))
            << lq << "x" << lk << " " << causal;
  for (const auto& bc : longattn::bench::kCpuCases)
    EXPECT_EQ(longattn::bench::attention_flops(bc), 4.0 * static_cast<double>(bc.B * bc.Hq * bc.D) *
                                                        brute_force_pairs(bc.Lq, bc.Lk, bc.causal))
        << bc.name;
}

}  // namespace
