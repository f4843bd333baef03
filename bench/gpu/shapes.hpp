// Issue 12's suites of bench_gpu (bench_gpu --suite shapes | budget-shapes):
// array masks, a sliding window and odd head dims on the CUDA backend, and a
// budget table with a fresh device profile. shapes.cpp's header says what
// each runs; bench/gpu/shapes_peers.py adds PyTorch on the same rows.
#pragma once

#include <string>

namespace longattn::bench::gpu {

struct SuiteArgs {
  std::string csv_path;  // write the rows here ("" = none)
  std::string filter;    // only rows whose name contains this
  bool quick = false;    // skip the 64K rows (and use 16K shapes in the budget table)
};

// Return the process exit code: 0 when every row ran or was refused by the
// library (a refusal is a result: the row says why).
int run_shapes_suite(const SuiteArgs& args);
int run_budget_shapes_suite(const SuiteArgs& args);

}  // namespace longattn::bench::gpu
