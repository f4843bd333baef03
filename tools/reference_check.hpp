// Checks the library's output on a sample of query rows against the float64
// oracle the test suite uses (tests/reference/, which shares no code with the
// library), judged by the suite's metric and tolerance table, so a PASS here
// means what a passing test means.
#pragma once

#include <cstdint>
#include <string>

#include "inputs.hpp"

namespace longattn::cli {

struct CheckResult {
  std::int64_t rows = 0;   // (b, h, i) rows compared
  bool all_rows = false;   // every row was compared (rows asked >= B * Hq * Lq)
  double max_out_err = 0;  // ref::metric: max |O - ref| over each row's max |ref|
  double max_lse_err = 0;  // ref::lse_metric: |LSE - ref| / max(1, |ref|); 0 if no LSE
  double out_tolerance = 0;
  double lse_tolerance = 0;
  bool pass = false;
  std::string worst_row;  // "b=0 h=3 i=1027" of the largest O error
};

// Compares w.out (and w.lse when present) on `rows` sampled query rows, always
// including the first and last query of the first and last head; on every
// row, once each, when `rows` is at least B * Hq * Lq. The outputs must be on
// the host (Workload::fetch_outputs). tolerance <= 0: the table's, for the
// output's dtype (ref::tolerance); the LSE is held to ref::lse_tolerance().
CheckResult check_against_reference(const Workload& w, std::int64_t rows, std::uint64_t seed,
                                    double tolerance = 0);

}  // namespace longattn::cli
