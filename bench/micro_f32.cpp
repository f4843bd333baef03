// bench_micro_f32: the CPU kernel's float32 product (the AVX-512 build's
// 6 x 64 register block) on one thread, against the core's FMA peak, in the
// two shapes a key tile runs (S = Q K^T, O += P V). A compiler that copies
// the block's operands through memory shows here as a rate far under the
// peak (docs/BENCHMARKS.md: GCC 13 did, at 60-65% of the fixed rate on a
// Xeon).
//
//   taskset -c 3 build/bench/bench_micro_f32 [--rows 192] [--head-dim 128]
#include "bench/micro_f32.hpp"

#include <CLI/CLI.hpp>
#include <cstdio>

int main(int argc, char** argv) {
  CLI::App app{"bench_micro_f32: the CPU kernel's float32 product against the FMA peak"};
  int rows = 192, head_dim = 128;
  app.add_option("--rows", rows, "rows of a work item (a multiple of 6)")
      ->check(CLI::Range(6, 4096))
      ->check(
          [](const std::string& s) { return std::stoi(s) % 6 == 0 ? "" : "not a multiple of 6"; });
  app.add_option("--head-dim", head_dim, "head dim D (= Dv)")->check(CLI::Range(16, 512));
  CLI11_PARSE(app, argc, argv);
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512f")) {
    std::printf("bench_micro_f32: not measured (this CPU has no AVX-512F)\n");
    return 0;
  }
  const auto r = longattn::bench::measure_micro_f32_avx512(rows, head_dim);
  std::printf("FMA peak, one thread: %.1f GFLOP/s\n", r.peak);
  std::printf("S = Q K^T (%d x %d keys, K %d): %.1f GFLOP/s (%.0f%% of peak)\n", rows, r.keys,
              head_dim, r.qk, 100 * r.qk / r.peak);
  const int padded = (head_dim + 15) / 16 * 16;  // the columns P V runs over
  std::printf("O += P V  (%d x %d, K %d keys): %.1f GFLOP/s (%.0f%% of peak)\n", rows, padded,
              r.keys, r.pv, 100 * r.pv / r.peak);
  return 0;
}
