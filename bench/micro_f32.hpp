// bench_micro_f32's measurement, built with AVX-512 flags in its own file
// (micro_f32_avx512.cpp) so that the rest of the program runs anywhere.
#pragma once

namespace longattn::bench {

struct MicroF32 {
  double peak = 0;  // GFLOP/s of independent FMA chains on one thread
  double qk = 0;    // the kernel's product in the S = Q K^T shape of one key tile
  double pv = 0;    // and in the O += P V shape
  int keys = 0;     // the kernel's keys per tile (the shapes' N, then K)
};

// One thread (the caller pins it): `rows` rows of a work item, head dim
// `head_dim`. Only where the CPU has AVX-512F.
MicroF32 measure_micro_f32_avx512(int rows, int head_dim);

}  // namespace longattn::bench
