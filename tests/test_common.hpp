// Shared by the test files: run one case and expect it to match the
// reference within the dtype's tolerance.
#pragma once

#include <gtest/gtest.h>

#include <array>
#include <limits>
#include <vector>

#include "support.hpp"

namespace lt {

inline const std::vector<longattn::DType>& all_dtypes() {
  static const std::vector<longattn::DType> t{longattn::DType::float32, longattn::DType::float16,
                                              longattn::DType::bfloat16};
  return t;
}

// Every broadcast of a mask over [B, Hq, Lq, Lk] (true: that dim has size 1,
// or stride 0 with Case::mask_stride0) the mask tests run through.
inline const std::vector<std::array<bool, 4>>& mask_broadcasts() {
  static const std::vector<std::array<bool, 4>> b{
      {false, false, false, false},  // [B, Hq, Lq, Lk]
      {true, true, false, false},    // [1, 1, Lq, Lk]
      {false, true, true, false},    // [B, 1, 1, Lk]
      {true, true, true, false},     // [1, 1, 1, Lk]
      {false, false, true, false},   // [B, Hq, 1, Lk]
      {true, false, false, true},    // [1, Hq, Lq, 1]
      {true, true, true, true},      // [1, 1, 1, 1]
  };
  return b;
}

// Runs the case (fresh inputs from c.seed) and checks it; returns the data
// for further checks.
inline CaseData check_case(const Case& c, const longattn::AttentionOptions& base = {}) {
  CaseData d(c);
  run(d, base);
  const Comparison r = compare(d);
  EXPECT_TRUE(r.ok) << r.message;
  return d;
}

// Query rows 0 .. n - 1, for expect_empty_rows.
inline std::vector<std::int64_t> first_rows(std::int64_t n) {
  std::vector<std::int64_t> rows(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) rows[static_cast<std::size_t>(i)] = i;
  return rows;
}

// Expects the given query rows (of every batch and head) to have seen no
// key: O = 0 exactly, LSE = -inf (with sinks: the sink up to float32
// rounding), never NaN.
inline void expect_empty_rows(CaseData& d, const std::vector<std::int64_t>& rows) {
  const auto o = d.out.read();
  const auto lse = d.lse.read();
  const std::int64_t Dv = d.c.dv();
  for (std::int64_t b = 0; b < d.c.B; ++b)
    for (std::int64_t h = 0; h < d.c.Hq; ++h)
      for (std::int64_t i : rows) {
        const std::int64_t r = (b * d.c.Hq + h) * d.c.Lq + i;
        // With sinks LSE = sink up to float32 rounding (the kernel may work in
        // base 2 and convert back); without, exactly -inf.
        const double got = lse[static_cast<std::size_t>(r)];
        if (d.c.sinks)
          EXPECT_NEAR(got, d.in.sinks[static_cast<std::size_t>(h)], 1e-6)
              << d.c.name() << " row " << i;
        else
          EXPECT_EQ(got, -std::numeric_limits<double>::infinity()) << d.c.name() << " row " << i;
        for (std::int64_t x = 0; x < Dv; ++x)
          ASSERT_EQ(o[static_cast<std::size_t>(r * Dv + x)], 0.0) << d.c.name() << " row " << i;
      }
}

}  // namespace lt
