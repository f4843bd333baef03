// The sampled rows go to the oracle (ref::attention_row) as a problem of
// their own, one KV head at a time, so the check copies at most one KV head
// into double however long the problem is.
#include "reference_check.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "metric.hpp"
#include "reference.hpp"

namespace longattn::cli {
namespace {

struct Row {
  std::int64_t b, h, i;
};

// Edge rows first (tiling and causal bugs live there), then a seeded sample;
// every row once when `rows` covers them all.
std::vector<Row> pick_rows(std::int64_t B, std::int64_t Hq, std::int64_t Lq, std::int64_t rows,
                           std::uint64_t seed) {
  std::vector<Row> picks;
  if (rows >= B * Hq * Lq) {
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
  return picks;
}

ref::FloatType float_type(DType t) {
  switch (t) {
    case DType::float32:
      return ref::FloatType::float32;
    case DType::float16:
      return ref::FloatType::float16;
    case DType::bfloat16:
      return ref::FloatType::bfloat16;
    case DType::boolean:
      break;
  }
  throw InvalidArgument("[longattn] check: the output is not a float type");
}

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

// Rows that all read KV head `kvh` of batch `b`, as an oracle problem of
// their own: row r becomes query head r of length 1 over that head's keys
// (Hkv = 1). Which keys row (b, h, i) sees in the whole problem, the causal
// rule as the oracle states it (ref::visible) and the mask, becomes a
// [1, rows, 1, Lk] mask: additive when the mask is, else boolean.
ref::Inputs rows_as_problem(const Workload& w, std::int64_t b, std::int64_t kvh,
                            const std::vector<Row>& rows) {
  const std::int64_t Hq = w.q.shape[1], Lq = w.q.shape[2], D = w.q.shape[3];
  const std::int64_t Hkv = w.k.shape[1], Lk = w.k.shape[2], Dv = w.v.shape[3];
  const std::int64_t R = std::ssize(rows);
  ref::Inputs in;
  in.B = 1, in.Hq = R, in.Hkv = 1, in.Lq = 1, in.Lk = Lk, in.D = D, in.Dv = Dv;
  in.scale = w.scale ? *w.scale : 1.0 / std::sqrt(static_cast<double>(D));
  // q, k, v are contiguous [B, H, L, D] (generated or read from .npy).
  for (const Row& r : rows)
    for (std::int64_t d = 0; d < D; ++d)
      in.q.push_back(element_as_double(w.q, ((b * Hq + r.h) * Lq + r.i) * D + d));
  in.k.resize(static_cast<std::size_t>(Lk * D));
  in.v.resize(static_cast<std::size_t>(Lk * Dv));
  for (std::int64_t n = 0; n < Lk * D; ++n)
    in.k[static_cast<std::size_t>(n)] = element_as_double(w.k, (b * Hkv + kvh) * Lk * D + n);
  for (std::int64_t n = 0; n < Lk * Dv; ++n)
    in.v[static_cast<std::size_t>(n)] = element_as_double(w.v, (b * Hkv + kvh) * Lk * Dv + n);
  if (!w.sinks.empty())
    for (const Row& r : rows) in.sinks.push_back(element_as_double(w.sinks, r.h));

  if (!w.causal && w.mask.empty()) return in;
  ref::Inputs whole;  // shapes and the causal flag only: ref::visible's causal rule
  whole.B = w.q.shape[0], whole.Hq = Hq, whole.Hkv = Hkv, whole.Lq = Lq, whole.Lk = Lk;
  whole.causal = w.causal;
  const bool additive = !w.mask.empty() && w.mask.dtype != DType::boolean;
  in.mask_type = additive ? ref::MaskType::additive : ref::MaskType::boolean;
  in.mask_shape = {1, R, 1, Lk};
  in.mask.reserve(static_cast<std::size_t>(R * Lk));
  for (const Row& r : rows)
    for (std::int64_t j = 0; j < Lk; ++j) {
      double unused = 0;
      const bool seen = ref::visible(whole, b, r.h, r.i, j, &unused);
      const double m = w.mask.empty() ? 1.0 : at4(w.mask, b, r.h, r.i, j);
      if (additive)
        in.mask.push_back(seen ? m : -std::numeric_limits<double>::infinity());
      else
        in.mask.push_back(seen && m != 0 ? 1.0 : 0.0);
    }
  return in;
}

}  // namespace

CheckResult check_against_reference(const Workload& w, std::int64_t rows, std::uint64_t seed,
                                    double tolerance) {
  const std::int64_t B = w.q.shape[0], Hq = w.q.shape[1], Lq = w.q.shape[2];
  const std::int64_t Hkv = w.k.shape[1], Dv = w.v.shape[3];
  CheckResult res;
  res.out_tolerance =
      tolerance > 0 ? tolerance : ref::tolerance(float_type(w.out.dtype), w.k.shape[2]);
  res.lse_tolerance = ref::lse_tolerance();
  const std::vector<Row> picks = pick_rows(B, Hq, Lq, rows, seed);

  // The oracle's rows, in the order of `picks`, taken KV head by KV head
  // (at most kRowsAtOnce rows a problem, to bound the mask it builds).
  constexpr std::size_t kRowsAtOnce = 64;
  auto kv_of = [&](std::size_t n) { return picks[n].b * Hkv + picks[n].h / (Hq / Hkv); };
  std::vector<std::size_t> order(picks.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t x, std::size_t y) { return kv_of(x) < kv_of(y); });
  const auto dv = static_cast<std::size_t>(Dv);
  std::vector<double> want_o(picks.size() * dv), want_lse(picks.size());
  for (std::size_t first = 0, last = 0; first < order.size(); first = last) {
    std::vector<Row> batch;
    while (last < order.size() && batch.size() < kRowsAtOnce &&
           kv_of(order[last]) == kv_of(order[first]))
      batch.push_back(picks[order[last++]]);
    const Row& r0 = batch.front();
    const ref::Inputs in = rows_as_problem(w, r0.b, r0.h / (Hq / Hkv), batch);
    ref::check_inputs(in);
#pragma omp parallel for schedule(dynamic)
    for (std::int64_t r = 0; r < std::ssize(batch); ++r) {
      const std::size_t n = order[first + static_cast<std::size_t>(r)];
      ref::attention_row(in, 0, r, 0, &want_o[n * dv], &want_lse[n]);
    }
  }

  std::vector<double> got_o, got_lse;
  for (const Row& p : picks) {
    const std::int64_t row = (p.b * Hq + p.h) * Lq + p.i;
    for (std::int64_t d = 0; d < Dv; ++d) got_o.push_back(element_as_double(w.out, row * Dv + d));
    if (!w.lse.empty()) got_lse.push_back(w.lse.as<float>()[row]);
  }
  const ref::Metric o = ref::metric(got_o, want_o, Dv);
  res.max_out_err = o.err;
  if (o.worst >= 0) {
    const Row& p = picks[static_cast<std::size_t>(o.worst / Dv)];
    res.worst_row =
        "b=" + std::to_string(p.b) + " h=" + std::to_string(p.h) + " i=" + std::to_string(p.i);
  }
  if (!w.lse.empty()) res.max_lse_err = ref::lse_metric(got_lse, want_lse).err;
  res.rows = std::ssize(picks);
  res.all_rows = res.rows == B * Hq * Lq;
  res.pass = res.max_out_err <= res.out_tolerance && res.max_lse_err <= res.lse_tolerance;
  return res;
}

}  // namespace longattn::cli
