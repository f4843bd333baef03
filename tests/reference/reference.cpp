#include "reference.hpp"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace ref {

namespace {

std::int64_t mask_index(const Inputs& in, std::int64_t b, std::int64_t h, std::int64_t i,
                        std::int64_t j) {
  const std::array<std::int64_t, 4> idx{b, h, i, j};
  std::int64_t off = 0;
  for (int d = 0; d < 4; ++d) off = off * in.mask_shape[d] + (in.mask_shape[d] == 1 ? 0 : idx[d]);
  return off;
}

}  // namespace

void check_inputs(const Inputs& in) {
  auto expect = [](const char* what, std::size_t got, std::int64_t want) {
    if (want < 0 || got != static_cast<std::size_t>(want))
      throw std::invalid_argument(std::string("ref::Inputs.") + what + " has " +
                                  std::to_string(got) + " elements, want " + std::to_string(want));
  };
  if (in.Hkv <= 0 || in.Hq % in.Hkv != 0) throw std::invalid_argument("ref: Hkv must divide Hq");
  expect("q", in.q.size(), in.B * in.Hq * in.Lq * in.D);
  expect("k", in.k.size(), in.B * in.Hkv * in.Lk * in.D);
  expect("v", in.v.size(), in.B * in.Hkv * in.Lk * in.Dv);
  if (!in.sinks.empty()) expect("sinks", in.sinks.size(), in.Hq);
  if (in.mask_type != MaskType::none) {
    const std::array<std::int64_t, 4> full{in.B, in.Hq, in.Lq, in.Lk};
    std::int64_t n = 1;
    for (int d = 0; d < 4; ++d) {
      if (in.mask_shape[d] != 1 && in.mask_shape[d] != full[d])
        throw std::invalid_argument("ref: mask_shape does not broadcast");
      n *= in.mask_shape[d];
    }
    expect("mask", in.mask.size(), n);
  }
}

bool visible(const Inputs& in, std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j,
             double* additive) {
  *additive = 0.0;
  const std::int64_t diagonal = in.causal_top_left ? i : i + in.Lk - in.Lq;
  if (in.causal && j > diagonal) return false;
  if (in.window_left >= 0 && j < diagonal - in.window_left) return false;
  if (in.window_right >= 0 && j > diagonal + in.window_right) return false;
  if (in.mask_type == MaskType::boolean) return in.mask[mask_index(in, b, h, i, j)] != 0.0;
  if (in.mask_type == MaskType::additive) {
    const double a = in.mask[mask_index(in, b, h, i, j)];
    if (a == -std::numeric_limits<double>::infinity()) return false;
    *additive = a;
  }
  return true;
}

void attention_row(const Inputs& in, std::int64_t b, std::int64_t h, std::int64_t i, double* o,
                   double* lse) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  const std::int64_t hk = h / (in.Hq / in.Hkv);
  const double* qi = &in.q[static_cast<std::size_t>(((b * in.Hq + h) * in.Lq + i) * in.D)];

  // Pass 1: the visible scores and their maximum (the sink counts as a score).
  std::vector<std::int64_t> keys;
  std::vector<double> scores;
  bool has_nan = false;
  double m = in.sinks.empty() ? -inf : in.sinks[static_cast<std::size_t>(h)];
  for (std::int64_t j = 0; j < in.Lk; ++j) {
    double add = 0.0;
    if (!visible(in, b, h, i, j, &add)) continue;
    const double* kj = &in.k[static_cast<std::size_t>(((b * in.Hkv + hk) * in.Lk + j) * in.D)];
    double dot = 0.0;
    for (std::int64_t d = 0; d < in.D; ++d) dot += qi[d] * kj[d];
    double logit = in.scale * dot;
    if (in.softcap > 0) logit = in.softcap * std::tanh(logit / in.softcap);
    const double s = logit + add;
    if (std::isnan(s)) has_nan = true;
    if (s > m) m = s;
    keys.push_back(j);
    scores.push_back(s);
  }
  if (has_nan) {
    for (std::int64_t d = 0; d < in.Dv; ++d) o[d] = nan;
    *lse = nan;
    return;
  }
  for (std::int64_t d = 0; d < in.Dv; ++d) o[d] = 0.0;
  if (m == -inf) {  // no visible key and no sink
    *lse = -inf;
    return;
  }

  // Pass 2: the denominator and the weighted sum of v.
  double l = in.sinks.empty() ? 0.0 : std::exp(in.sinks[static_cast<std::size_t>(h)] - m);
  for (std::size_t n = 0; n < keys.size(); ++n) {
    const double p = std::exp(scores[n] - m);
    l += p;
    const double* vj =
        &in.v[static_cast<std::size_t>(((b * in.Hkv + hk) * in.Lk + keys[n]) * in.Dv)];
    for (std::int64_t d = 0; d < in.Dv; ++d) o[d] += p * vj[d];
  }
  for (std::int64_t d = 0; d < in.Dv; ++d) o[d] /= l;
  *lse = m + std::log(l);
}

Outputs attention(const Inputs& in) {
  check_inputs(in);
  Outputs out;
  out.o.assign(static_cast<std::size_t>(in.B * in.Hq * in.Lq * in.Dv), 0.0);
  out.lse.assign(static_cast<std::size_t>(in.B * in.Hq * in.Lq), 0.0);
  for (std::int64_t b = 0; b < in.B; ++b)
    for (std::int64_t h = 0; h < in.Hq; ++h)
      for (std::int64_t i = 0; i < in.Lq; ++i) {
        const std::int64_t row = (b * in.Hq + h) * in.Lq + i;
        attention_row(in, b, h, i, &out.o[static_cast<std::size_t>(row * in.Dv)],
                      &out.lse[static_cast<std::size_t>(row)]);
      }
  return out;
}

}  // namespace ref
