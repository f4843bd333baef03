#include "metric.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>

namespace ref {

double tolerance(FloatType t, std::int64_t keys) {
  switch (t) {
    case FloatType::float32:
      return std::max(1e-5, 1e-7 * std::sqrt(static_cast<double>(std::max<std::int64_t>(0, keys))));
    case FloatType::float16:
      return 2e-3;
    case FloatType::bfloat16:
      return 1.6e-2;
  }
  throw std::logic_error("ref::tolerance: unknown FloatType");
}

double lse_tolerance() { return 2e-5; }

namespace {

// Error of one entry against its reference, given the scale it is judged
// at; +inf for a non-finite mismatch.
double entry_error(double g, double w, double scale) {
  if (std::isfinite(w))
    return std::isfinite(g) ? std::abs(g - w) / scale : std::numeric_limits<double>::infinity();
  const bool same = std::isnan(w) ? std::isnan(g) : g == w;
  return same ? 0.0 : std::numeric_limits<double>::infinity();
}

void record(Metric& m, double e, double scale, std::size_t i) {
  if (!std::isfinite(e)) ++m.nonfinite_mismatches;
  if (e > m.err || m.worst < 0) {
    m.err = std::max(m.err, e);
    m.worst = static_cast<std::int64_t>(i);
    m.scale = scale;
  }
}

}  // namespace

Metric metric(const std::vector<double>& got, const std::vector<double>& want, std::int64_t row) {
  if (got.size() != want.size()) throw std::logic_error("ref::metric: size mismatch");
  const std::size_t n = want.size();
  const std::size_t len = row > 0 ? static_cast<std::size_t>(row) : std::max<std::size_t>(n, 1);
  if (n % len != 0) throw std::logic_error("ref::metric: size is not a multiple of the row length");
  Metric m;
  for (std::size_t r0 = 0; r0 < n; r0 += len) {
    double scale = kScaleFloor;
    for (std::size_t i = r0; i < r0 + len; ++i)
      if (std::isfinite(want[i])) scale = std::max(scale, std::abs(want[i]));
    for (std::size_t i = r0; i < r0 + len; ++i)
      record(m, entry_error(got[i], want[i], scale), scale, i);
  }
  return m;
}

Metric lse_metric(const std::vector<double>& got, const std::vector<double>& want) {
  if (got.size() != want.size()) throw std::logic_error("ref::lse_metric: size mismatch");
  Metric m;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const double scale = std::isfinite(want[i]) ? std::max(1.0, std::abs(want[i])) : 1.0;
    record(m, entry_error(got[i], want[i], scale), scale, i);
  }
  return m;
}

std::string Metric::describe_worst(const std::vector<double>& got,
                                   const std::vector<double>& want) const {
  std::ostringstream s;
  s << "err " << err << " (scale " << scale << ")";
  if (worst >= 0 && static_cast<std::size_t>(worst) < got.size())
    s << ", worst at flat index " << worst << ": got " << got[static_cast<std::size_t>(worst)]
      << " want " << want[static_cast<std::size_t>(worst)];
  if (nonfinite_mismatches) s << ", " << nonfinite_mismatches << " non-finite mismatches";
  return s.str();
}

}  // namespace ref
