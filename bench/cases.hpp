// The fixed benchmark case list, shared by bench/ and tests/ (a test may
// include this header to run the same shapes small or large). Every GFLOP/s
// figure in bench/ and docs/BENCHMARKS.md counts FLOPs with the library's
// longattn::attention_flops.
//
// bench_cpu --emit-cases writes this list as JSON, which bench/peer_torch.py
// reads, so the peer runs exactly these shapes.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "longattn/attention.hpp"
#include "longattn/tensor.hpp"

namespace longattn::bench {

struct Case {
  std::string_view name;
  std::int64_t B, Hq, Hkv, Lq, Lk, D;  // Dv = D
  bool causal;                         // bottom-right aligned (DESIGN.md)
  DType dtype;
};

// The peer-comparison cases (issue 2): Lq = Lk = 4096, Hq = 32, Hkv = 8,
// D = 128, causal and not, float32 and bfloat16; plus two D = 64 cases.
inline constexpr std::array<Case, 8> kCpuCases{{
    {"d128_4k_full_f32", 1, 32, 8, 4096, 4096, 128, false, DType::float32},
    {"d128_4k_causal_f32", 1, 32, 8, 4096, 4096, 128, true, DType::float32},
    {"d128_4k_full_bf16", 1, 32, 8, 4096, 4096, 128, false, DType::bfloat16},
    {"d128_4k_causal_bf16", 1, 32, 8, 4096, 4096, 128, true, DType::bfloat16},
    {"d64_2k_causal_f32", 1, 32, 8, 2048, 2048, 64, true, DType::float32},
    {"d64_2k_causal_bf16", 1, 32, 8, 2048, 2048, 64, true, DType::bfloat16},
    // Decode: one query over a 128K cache (sees every key: no mask needed,
    // so the peer's top-left is_causal never enters).
    {"d128_decode_128k_f32", 1, 32, 8, 1, 131072, 128, false, DType::float32},
    {"d128_decode_128k_bf16", 1, 32, 8, 1, 131072, 128, false, DType::bfloat16},
}};

// FLOPs of one case, by the library's count (longattn::attention_flops,
// bottom-right causal), so bench/ and the run reports agree.
inline double attention_flops(const Case& c) {
  return longattn::attention_flops(c.B, c.Hq, c.Lq, c.Lk, c.D, c.D, c.causal);
}

}  // namespace longattn::bench
