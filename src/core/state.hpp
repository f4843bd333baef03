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

// exp2 as the exact library call; the CUDA kernels' inner loops pass their
// approximate exp2 (fast_exp2, ex2.approx) to the same rules instead.
struct Exp2 {
  LONGATTN_HD float operator()(float x) const { return exp2f(x); }
};

// The merge rule, the one place it is written. Two states (m_a, l_a, o_a)
// and (m_b, l_b, o_b) merge onto M = max(m_a, m_b) as
//   l = l_a * 2^(m_a - M) + l_b * 2^(m_b - M), o likewise;
// `rescale` is that factor for one side. When M = -inf every side is empty:
// the factor is 0 (not 2^(-inf - -inf) = NaN), so the result stays empty.
// Any number of sides merge the same way (split-K partials, lane groups,
// merge_states' parts). T and exp are double and exp for merge_states,
// which merges base-e LSEs.
template <class T = float, class Exp = Exp2>
LONGATTN_HD T rescale(T m, T M, Exp exp = {}) {
  return M == -T(INFINITY) ? T(0) : exp(m - M);
}

struct MergeFactors {
  float m;  // the merged max
  float a;  // multiply side a's l and o by this
  float b;  // multiply side b's l and o by this
};
template <class Exp = Exp2>
LONGATTN_HD MergeFactors merge_factors(float m_a, float m_b, Exp exp2 = {}) {
  const float m = m_a > m_b ? m_a : m_b;
  return {m, rescale(m_a, m, exp2), rescale(m_b, m, exp2)};
}

// The online-softmax step, the same rule with the tile's side taken
// directly at the new max: a row whose running max moves from m to
// m_new = max(m, tile's largest logit) rescales its (l, o) by `alpha` and
// adds p_j = 2^(t_j - shift) of the tile. A row that has seen only masked
// keys keeps m_new = -inf; shifting by 0 then gives p = 2^-inf = 0 instead
// of NaN. A NaN m_new (a NaN score, carried on purpose) makes alpha NaN,
// so the row ends NaN as documented.
struct OnlineStep {
  float alpha;
  float shift;
};
template <class Exp = Exp2>
LONGATTN_HD OnlineStep online_step(float m, float m_new, Exp exp2 = {}) {
  return {rescale(m, m_new, exp2), m_new == -INFINITY ? 0.f : m_new};
}

// The initial state of a row with a sink logit sigma (base e).
LONGATTN_HD float sink_m(float sigma) { return sigma * kLog2e; }

// 1 / l for finalizing, 0 for an empty row (O = 0, not NaN).
LONGATTN_HD float inv_sum(float l) { return l > 0.f ? 1.f / l : (l == 0.f ? 0.f : NAN); }

// Natural-log LSE of a finalized row; -inf for an empty row.
LONGATTN_HD float lse_base_e(float m, float l) {
  if (l == 0.f) return -INFINITY;
  return (m + log2f(l)) * kLn2;
}

}  // namespace longattn::core
