// Shared by the test files: run one case and expect it to match the
// reference within the dtype's tolerance.
#pragma once

#include <gtest/gtest.h>

#include <vector>

#include "support.hpp"

namespace lt {

inline const std::vector<longattn::DType>& all_dtypes() {
  static const std::vector<longattn::DType> t{longattn::DType::float32, longattn::DType::float16,
                                              longattn::DType::bfloat16};
  return t;
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

}  // namespace lt
