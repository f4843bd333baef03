// The attention state (m, l, o) and its merge, shared by the CPU kernel, the
// chunk combiner, merge_states() and (as device code) the CUDA kernels.
//
// For one query row over a key set S, with base-2 logits
//   t_j = log2(e) * (scale * q.k_j + mask_j):
//   m = max_j t_j,  l = sum_j 2^(t_j - m),  o = sum_j 2^(t_j - m) * v_j
// (o unnormalized). Base 2 because exp2 is the cheap instruction on every
// target; the public LSE is converted to base e only when finalized:
//   O = o / l,  LSE = (m + log2 l) * ln 2.
//
// Empty state: (m = -inf, l = 0, o = 0). It is the identity of merge: the
// factor of an empty side is 0 and the other side's is exactly 1. We guard
// -inf - (-inf) because two empty sides (a fully masked chunk meeting a fresh
// state) would otherwise turn into NaN.
//
// Sinks (per-head logit sigma, base e) enter as the initial state
// (m = sigma * log2 e, l = 1, o = 0), exactly once per row.
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define LONGATTN_HD __host__ __device__ __forceinline__
#else
#define LONGATTN_HD inline
#endif

namespace longattn::core {

inline constexpr float kLog2e = 1.4426950408889634f;
inline constexpr float kLn2 = 0.6931471805599453f;

// Factors that bring two states with maxima m_a, m_b onto their common max.
struct MergeFactors {
  float m;  // the merged max
  float a;  // multiply side a's l and o by this
  float b;  // multiply side b's l and o by this
};

LONGATTN_HD MergeFactors merge_factors(float m_a, float m_b) {
  const float m = m_a > m_b ? m_a : m_b;
  if (m == -INFINITY) return {m, 0.f, 0.f};  // both empty: stay empty, no NaN
  return {m, exp2f(m_a - m), exp2f(m_b - m)};
}

// Scalar row state with the vector o kept by the caller.
struct RowState {
  float m = -INFINITY;
  float l = 0.f;
};

// 1 / l for finalizing, 0 for an empty row (O = 0, not NaN).
LONGATTN_HD float inv_sum(float l) { return l > 0.f ? 1.f / l : (l == 0.f ? 0.f : NAN); }

// Natural-log LSE of a finalized row; -inf for an empty row.
LONGATTN_HD float lse_base_e(float m, float l) {
  if (l == 0.f) return -INFINITY;
  return (m + log2f(l)) * kLn2;
}

}  // namespace longattn::core
