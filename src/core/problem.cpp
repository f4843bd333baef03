// Pair and FLOP counts under the causal rule (shared by planner, executor,
// reports and, through the public attention_flops(), benchmarks, so every
// TFLOP/s figure uses the same count).
#include "core/problem.hpp"

#include <algorithm>

#include "core/mask_blocks.hpp"

namespace longattn::core {

namespace {

// Sum over rows i in [q0, q1) of clamp(i + s, lo, hi), lo <= hi: rows up to
// lo - s give lo, rows from hi - s on give hi, the ones between i + s.
double clamped_sum(std::int64_t q0, std::int64_t q1, std::int64_t s, std::int64_t lo,
                   std::int64_t hi) {
  const std::int64_t a = std::clamp(lo - s, q0, q1);  // rows [q0, a) give lo
  const std::int64_t b = std::clamp(hi - s, a, q1);   // rows [b, q1) give hi
  const double ramp = static_cast<double>(b - a) *
                      (static_cast<double>(a + s) + static_cast<double>(b - 1 + s)) / 2;
  return static_cast<double>(a - q0) * static_cast<double>(lo) +
         static_cast<double>(q1 - b) * static_cast<double>(hi) + ramp;
}

}  // namespace

double Problem::visible_pairs(std::int64_t q0, std::int64_t q1, std::int64_t k0,
                              std::int64_t k1) const {
  if (q1 <= q0 || k1 <= k0) return 0;
  if (mask_cost != nullptr) {
    // Per query block: its rows' pairs under the causal rule and the
    // window, times the share of the blocks they span that the mask
    // shows (a partial block counts whole: the kernels compute it).
    double pairs = 0;
    for (std::int64_t qb = q0 / kMaskBlock; qb * kMaskBlock < q1; ++qb) {
      const std::int64_t a = std::max(q0, qb * kMaskBlock);
      const std::int64_t b = std::min(q1, (qb + 1) * kMaskBlock);
      const std::int64_t from = std::max(k0, key_begin(a)), to = std::min(k1, key_end(b - 1));
      if (to <= from) continue;
      pairs += rule_pairs(a, b, k0, k1) *
               mask_cost->shown(qb, from / kMaskBlock, (to + kMaskBlock - 1) / kMaskBlock);
    }
    return pairs;
  }
  return rule_pairs(q0, q1, k0, k1);
}

double Problem::rule_pairs(std::int64_t q0, std::int64_t q1, std::int64_t k0,
                           std::int64_t k1) const {
  // Row i sees [key_begin(i), key_end(i)); inside the rectangle that is
  // clamp(end, k0, k1) - clamp(begin, k0, k1) keys (never negative: both
  // bounds are monotone and begin <= end). Each bound is either unbounded
  // or i + a shift, so each sum is a ramp between two flat parts.
  const std::int64_t r = right_reach();
  const double ends = r < 0 ? static_cast<double>(q1 - q0) * static_cast<double>(k1)
                            : clamped_sum(q0, q1, causal_offset + r + 1, k0, k1);
  const double begins = window_left < 0 ? static_cast<double>(q1 - q0) * static_cast<double>(k0)
                                        : clamped_sum(q0, q1, causal_offset - window_left, k0, k1);
  return ends - begins;
}

double Problem::flops(std::int64_t q0, std::int64_t q1, std::int64_t k0, std::int64_t k1) const {
  return 2.0 * static_cast<double>(B * Hq) * static_cast<double>(D + Dv) *
         visible_pairs(q0, q1, k0, k1);
}

}  // namespace longattn::core

namespace longattn {

double attention_flops(std::int64_t B, std::int64_t Hq, std::int64_t Lq, std::int64_t Lk,
                       std::int64_t D, std::int64_t Dv, bool causal) {
  core::Problem p;
  p.B = B, p.Hq = Hq, p.Lq = Lq, p.Lk = Lk, p.D = D, p.Dv = Dv;
  p.causal = causal;
  p.causal_offset = Lk - Lq;  // bottom-right
  return p.flops(0, Lq, 0, Lk);
}

}  // namespace longattn
