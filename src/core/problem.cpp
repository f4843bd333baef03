// Pair and FLOP counts under the causal rule (shared by planner, executor,
// reports and, through the public attention_flops(), benchmarks, so every
// TFLOP/s figure uses the same count).
#include "core/problem.hpp"

#include <algorithm>

namespace longattn::core {

double Problem::visible_pairs(std::int64_t q0, std::int64_t q1, std::int64_t k0,
                              std::int64_t k1) const {
  if (q1 <= q0 || k1 <= k0) return 0;
  const double rows = static_cast<double>(q1 - q0), cols = static_cast<double>(k1 - k0);
  if (!causal) return rows * cols;
  // Row i sees min(k1, max(k0, i + off + 1)) - k0 keys of the rectangle:
  // none while i + off + 1 <= k0, all once i + off + 1 >= k1, a ramp between.
  const std::int64_t off = causal_offset;
  const std::int64_t full_from = std::max(q0, k1 - off - 1);
  const double full = static_cast<double>(std::max<std::int64_t>(0, q1 - full_from)) * cols;
  const std::int64_t a = std::max(q0, k0 - off), b = std::min(q1, k1 - off - 1);
  double ramp = 0;
  if (b > a) {
    const double first = static_cast<double>(a + off + 1 - k0);
    const double last = static_cast<double>(b - 1 + off + 1 - k0);
    ramp = static_cast<double>(b - a) * (first + last) / 2;
  }
  return full + ramp;
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
