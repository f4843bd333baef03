// The fixed benchmark case list, shared by bench/ and tests/ (a test may
// include this header to run the same shapes small or large), and the one
// FLOP-count helper behind every GFLOP/s figure in bench/ and
// docs/BENCHMARKS.md.
//
// bench_cpu --emit-cases writes this list as JSON, which bench/peer_torch.py
// reads, so the peer runs exactly these shapes.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <string_view>

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
inline constexpr std::array<Case, 6> kCpuCases{{
    {"d128_4k_full_f32", 1, 32, 8, 4096, 4096, 128, false, DType::float32},
    {"d128_4k_causal_f32", 1, 32, 8, 4096, 4096, 128, true, DType::float32},
    {"d128_4k_full_bf16", 1, 32, 8, 4096, 4096, 128, false, DType::bfloat16},
    {"d128_4k_causal_bf16", 1, 32, 8, 4096, 4096, 128, true, DType::bfloat16},
    {"d64_2k_causal_f32", 1, 32, 8, 2048, 2048, 64, true, DType::float32},
    {"d64_2k_causal_bf16", 1, 32, 8, 2048, 2048, 64, true, DType::bfloat16},
}};

// (query, key) pairs that the mask lets through. Causal is bottom-right
// aligned: query i (of Lq) sees keys j <= i + (Lk - Lq), clamped to [0, Lk],
// which for Lq <= Lk sums to Lq*(Lk-Lq) + Lq*(Lq+1)/2.
constexpr double visible_pairs(std::int64_t Lq, std::int64_t Lk, bool causal) {
  if (!causal) return static_cast<double>(Lq) * static_cast<double>(Lk);
  // Rows i in [Lq - Lk, Lq) see i + 1 + Lk - Lq keys (1..Lk); earlier rows see none.
  const std::int64_t rows = std::min(Lq, Lk);  // rows that see at least one key
  const double first = static_cast<double>(Lk - rows + 1);
  return static_cast<double>(rows) * (first + static_cast<double>(Lk)) / 2.0;
}

// FLOPs of one attention call: 2*D for Q.K^T plus 2*Dv for P.V per visible
// pair and (batch, query head); with Dv = D that is 4*B*Hq*D*pairs.
constexpr double attention_flops(std::int64_t B, std::int64_t Hq, std::int64_t D, std::int64_t Dv,
                                 std::int64_t Lq, std::int64_t Lk, bool causal) {
  return 2.0 * static_cast<double>(B * Hq) * static_cast<double>(D + Dv) *
         visible_pairs(Lq, Lk, causal);
}

constexpr double attention_flops(const Case& c) {
  return attention_flops(c.B, c.Hq, c.D, c.D, c.Lq, c.Lk, c.causal);
}

static_assert(visible_pairs(4, 4, true) == 10);
static_assert(visible_pairs(2, 5, true) == 4 + 5);
static_assert(visible_pairs(5, 2, true) == 1 + 2);
static_assert(visible_pairs(3, 4, false) == 12);

}  // namespace longattn::bench
