// See cost_fit.hpp.
#include "core/cost_fit.hpp"

#include <algorithm>

namespace longattn::core {

void FixedCostFit::add(double dispatches, double flops, double ms) {
  if (!(dispatches > 0) || !(flops >= 0) || !(ms >= 0)) return;
  window_.push_back({dispatches, flops, ms});
  if (window_.size() > kWindow) window_.pop_front();
}

std::optional<double> FixedCostFit::fixed_ms() const {
  if (window_.size() < kMinSamples) return std::nullopt;
  // Least squares of t = a * n + s * w (no intercept: no dispatch, no time),
  // with w scaled to its mean so that the conditioning test reads the same
  // for any FLOP count.
  double wbar = 0;
  for (const Sample& x : window_) wbar += x.w;
  wbar /= static_cast<double>(window_.size());
  if (!(wbar > 0)) return std::nullopt;
  double nn = 0, nw = 0, ww = 0, nt = 0, wt = 0;
  for (const Sample& x : window_) {
    const double w = x.w / wbar;
    nn += x.n * x.n;
    nw += x.n * w;
    ww += w * w;
    nt += x.n * x.t;
    wt += w * x.t;
  }
  const double det = nn * ww - nw * nw;
  // Every submission of one shape (work proportional to dispatches): fixed
  // cost and throughput cannot be told apart.
  if (!(det > 1e-4 * nn * ww)) return std::nullopt;
  const double a = (nt * ww - nw * wt) / det;
  const double s = (nn * wt - nw * nt) / det;
  // Time that does not grow with work is all fixed cost.
  if (!(s > 0)) return nt / nn;
  return std::max(0.0, a);
}

}  // namespace longattn::core
