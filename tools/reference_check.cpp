// A float64 scalar attention over sampled rows, written from the definition
// in DESIGN.md (not from the library's state math): scores, max, sum of
// exponentials, weighted sum, then normalize.
#include "reference_check.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace longattn::cli {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Element (i0, i1, i2, i3) of a 4-D (or lower-rank, left-padded) array that
// broadcasts: size-1 dims are read at index 0.
double at4(const HostArray& a, std::int64_t i0, std::int64_t i1, std::int64_t i2, std::int64_t i3) {
  std::int64_t s[4] = {1, 1, 1, 1};
  const std::size_t r = a.shape.size();
  for (std::size_t d = 0; d < r; ++d) s[4 - r + d] = a.shape[d];
  const std::int64_t idx[4] = {i0, i1, i2, i3};
  std::int64_t off = 0;
  for (int d = 0; d < 4; ++d) off = off * s[d] + (s[d] == 1 ? 0 : idx[d]);
  return element_as_double(a, off);
}

// std::max(-inf, NaN) is -inf: a NaN score would drop out of the max, and a
// row whose every score is NaN would look empty (O = 0) while the library
// rightly returns NaN. NaN wins here, so it reaches O and the LSE as it does
// in the library.
double max_nan(double a, double b) { return std::isnan(a) || std::isnan(b) ? NAN : std::max(a, b); }

struct RowRef {
  std::vector<double> o;  // [Dv]
  double lse = -kInf;
};

RowRef reference_row(const Workload& w, std::int64_t b, std::int64_t h, std::int64_t i) {
  const std::int64_t Hq = w.q.shape[1], Lq = w.q.shape[2], D = w.q.shape[3];
  const std::int64_t Hkv = w.k.shape[1], Lk = w.k.shape[2], Dv = w.v.shape[3];
  const std::int64_t kvh = h / (Hq / Hkv);
  const double scale = w.scale ? *w.scale : 1.0 / std::sqrt(static_cast<double>(D));

  std::vector<double> q(static_cast<std::size_t>(D));
  // q, k, v are contiguous [B, H, L, D] (generated or read from .npy).
  const std::int64_t q_row = ((b * Hq + h) * Lq + i) * D;
  const std::int64_t k_base = (b * Hkv + kvh) * Lk * D;
  const std::int64_t v_base = (b * Hkv + kvh) * Lk * Dv;
  for (std::int64_t d = 0; d < D; ++d) q[d] = element_as_double(w.q, q_row + d);

  std::vector<double> s(static_cast<std::size_t>(Lk), -kInf);
  double m = -kInf;
  for (std::int64_t j = 0; j < Lk; ++j) {
    if (w.causal && j > i + (Lk - Lq)) continue;  // bottom-right aligned
    double bias = 0;
    if (!w.mask.empty()) {
      const double mv = at4(w.mask, b, h, i, j);
      if (w.mask.dtype == DType::boolean) {
        if (mv == 0) continue;
      } else {
        bias = mv;
      }
    }
    double dot = 0;
    for (std::int64_t d = 0; d < D; ++d) dot += q[d] * element_as_double(w.k, k_base + j * D + d);
    s[j] = scale * dot + bias;
    m = max_nan(m, s[j]);
  }
  const double sink = w.sinks.empty() ? -kInf : element_as_double(w.sinks, h);
  m = max_nan(m, sink);

  RowRef r;
  r.o.assign(static_cast<std::size_t>(Dv), 0.0);
  if (m == -kInf) return r;  // nothing visible, no sink: O = 0, LSE = -inf
  double l = sink == -kInf ? 0.0 : std::exp(sink - m);
  for (std::int64_t j = 0; j < Lk; ++j) {
    if (s[j] == -kInf) continue;  // masked; a NaN score is not skipped
    const double p = std::exp(s[j] - m);
    l += p;
    for (std::int64_t d = 0; d < Dv; ++d) r.o[d] += p * element_as_double(w.v, v_base + j * Dv + d);
  }
  for (auto& x : r.o) x /= l;
  r.lse = m + std::log(l);
  return r;
}

double abs_err(double got, double want) {
  if (std::isnan(got) || std::isnan(want)) return std::isnan(got) && std::isnan(want) ? 0 : kInf;
  if (std::isinf(got) || std::isinf(want)) return got == want ? 0 : kInf;
  return std::abs(got - want);
}

}  // namespace

double default_out_tolerance(DType dtype) {
  switch (dtype) {
    case DType::float32:
      return 1e-4;
    case DType::float16:
      return 5e-3;
    case DType::bfloat16:
      return 3e-2;
    case DType::boolean:
      break;
  }
  return 0;
}

double default_lse_tolerance(DType dtype) { return dtype == DType::float32 ? 1e-3 : 2e-2; }

CheckResult check_against_reference(const Workload& w, std::int64_t rows, std::uint64_t seed,
                                    double tolerance) {
  const std::int64_t B = w.q.shape[0], Hq = w.q.shape[1], Lq = w.q.shape[2];
  const std::int64_t Dv = w.v.shape[3];
  CheckResult res;
  res.out_tolerance = tolerance > 0 ? tolerance : default_out_tolerance(w.q.dtype);
  res.lse_tolerance = default_lse_tolerance(w.q.dtype);

  // Edge rows first (tiling and causal bugs live there), then a seeded sample.
  struct Row {
    std::int64_t b, h, i;
  };
  std::vector<Row> picks;
  const std::int64_t all_rows = B * Hq * Lq;
  if (rows >= all_rows) {
    // Every row once, rather than `rows` draws with repeats: --check-rows
    // 1e12 on a small problem must not build a vector of 1e12 picks.
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t h = 0; h < Hq; ++h)
        for (std::int64_t i = 0; i < Lq; ++i) picks.push_back({b, h, i});
  } else if (rows > 0) {
    picks = {{0, 0, 0}, {B - 1, Hq - 1, Lq - 1}, {0, 0, Lq - 1}, {B - 1, Hq - 1, 0}};
    std::uint64_t x = seed * 0x9e3779b97f4a7c15ull + 12345;
    while (static_cast<std::int64_t>(picks.size()) < rows) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      const std::uint64_t r = x >> 11;
      picks.push_back({static_cast<std::int64_t>(r % static_cast<std::uint64_t>(B)),
                       static_cast<std::int64_t>((r / 7) % static_cast<std::uint64_t>(Hq)),
                       static_cast<std::int64_t>((r / 131) % static_cast<std::uint64_t>(Lq))});
    }
    picks.resize(static_cast<std::size_t>(std::min<std::int64_t>(rows, std::ssize(picks))));
  }

  std::vector<RowRef> refs(picks.size());
#pragma omp parallel for schedule(dynamic)
  for (std::int64_t n = 0; n < std::ssize(picks); ++n)
    refs[n] = reference_row(w, picks[n].b, picks[n].h, picks[n].i);

  double ref_scale = 0;
  for (const auto& r : refs)
    for (double x : r.o) ref_scale = std::max(ref_scale, std::abs(x));
  if (ref_scale == 0) ref_scale = 1;  // every sampled row empty: compare absolutely

  for (std::size_t n = 0; n < picks.size(); ++n) {
    const auto [b, h, i] = picks[n];
    const std::int64_t row = (b * Hq + h) * Lq + i;
    for (std::int64_t d = 0; d < Dv; ++d) {
      const double e = abs_err(element_as_double(w.out, row * Dv + d), refs[n].o[d]) / ref_scale;
      if (e > res.max_out_err || (n == 0 && d == 0)) {
        if (e > res.max_out_err) res.max_out_err = e;
        res.worst_row =
            "b=" + std::to_string(b) + " h=" + std::to_string(h) + " i=" + std::to_string(i);
      }
    }
    if (!w.lse.empty())
      res.max_lse_err = std::max(res.max_lse_err, abs_err(w.lse.as<float>()[row], refs[n].lse));
  }
  res.rows = std::ssize(picks);
  res.all_rows = res.rows == all_rows;
  res.pass = res.max_out_err <= res.out_tolerance && res.max_lse_err <= res.lse_tolerance;
  return res;
}

}  // namespace longattn::cli
