// Checks the library's output against a float64 attention computed here, on a
// sample of query rows. The reference is the tool's own scalar loop (it shares
// no code with the library or tests/reference/), so agreement means something.
#pragma once

#include <cstdint>
#include <string>

#include "inputs.hpp"

namespace longattn::cli {

struct CheckResult {
  std::int64_t rows = 0;   // (b, h, i) rows compared
  bool all_rows = false;   // every row was compared (rows asked >= B * Hq * Lq)
  double max_out_err = 0;  // max |O - ref| / max |ref| over the sampled rows
  double max_lse_err = 0;  // max |LSE - ref| (absolute, natural log); 0 if no LSE
  double out_tolerance = 0;
  double lse_tolerance = 0;
  bool pass = false;
  std::string worst_row;  // "b=0 h=3 i=1027" of the largest O error
};

// Per-dtype tolerances on the relative O error: the output is rounded to the
// dtype, so its half-ulp sets the floor (bf16: 2^-9, f16: 2^-12).
double default_out_tolerance(DType dtype);
double default_lse_tolerance(DType dtype);

// Compares w.out (and w.lse when present) on `rows` sampled query rows, always
// including the first and last query of the first and last head; on every
// row, once each, when `rows` is at least B * Hq * Lq. The outputs
// must be on the host (Workload::fetch_outputs). tolerance <= 0: default.
CheckResult check_against_reference(const Workload& w, std::int64_t rows, std::uint64_t seed,
                                    double tolerance = 0);

}  // namespace longattn::cli
