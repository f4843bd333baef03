// How a result is judged against the float64 reference: one metric for the
// output, one for the LSE, and a tolerance per output type. The tests
// (through tests/support) and the longattn tool's --check-rows both judge
// by these, so a PASS means the same thing in either.
//
// Like reference.hpp, this shares no code with longattn: the output's type
// is a FloatType of its own, which callers map from the library's dtype.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ref {

// The types an output can be stored in.
enum class FloatType { float32, float16, bfloat16 };

// Tolerance of the output metric below for outputs stored in `t`. Why these
// values: the reference sees the inputs already rounded to `t`, so what
// remains is float32 accumulation (~1e-7 relative) plus rounding O to `t` on
// output: half an ulp is 2^-24 (float32), 2^-11 = 4.9e-4 (float16), 2^-8 =
// 3.9e-3 (bfloat16) of the row's largest |O|. The table leaves ~4x margin
// over that output rounding for 16-bit types (GPU kernels also round P to
// 16 bits before P.V) and ~100x over float32 accumulation error for float32.
//
// `keys`, the most keys a row sees, widens the float32 entry: a row's |O|
// shrinks like 1 / sqrt(keys) while its float32 sums over ~keys terms of
// size ~1 carry error ~sqrt(keys) * 2^-24 of those terms, so the error
// relative to |O| grows like sqrt(keys). Measured on generated inputs
// (longattn CLI, float32, D = 128): 5.1e-6 at 16K keys, 1.1e-5 at 64K,
// 2.1e-5 at 256K, 4.0e-5 at 1M, i.e. ~4e-8 * sqrt(keys); the allowance is
// 1e-7 * sqrt(keys) (1.0e-4 at 1M keys), which still fails a kernel that
// drops one key in a thousand. The 16-bit entries are far above it.
double tolerance(FloatType t, std::int64_t keys = 0);

// Tolerance of the LSE metric below. LSE is float32 whatever the inputs'
// dtype (the inputs the reference sees are already rounded), so one value
// serves all: float32 score and exp/log arithmetic keeps it within ~1e-6
// of max(1, |LSE|); 2e-5 leaves 20x. At LSE = 16 that is 3e-4 nats (0.03%
// of the softmax mass), where the output dtype's tolerance allowed 0.26.
double lse_tolerance();

// The one output metric: the worst error relative to the scale of its own
// row of the reference. With `row` > 0, entries come in rows of `row`
// consecutive values (an output row of Dv values) and
//   err = max_i |got_i - want_i| / scale(row of i),
//   scale(r) = max(kScaleFloor, max |want| over row r's finite entries),
// so a row whose |O| is 0.004 (a million keys) is judged at 0.004, not at 1
// (the old max(1, .) let an all-zero output pass). The floor, 1e-4, is below
// every |O| of a row that sees its keys in the tests, and above what the
// output dtype can resolve near zero: a row a sink dominates has |O| ~ 1e-8,
// which float16 rounds to 0 or to its smallest subnormal, 6e-8. `row` = 0:
// one row of all entries. Where want is NaN or +-inf, got must be the same
// (NaN, or the same infinity); a mismatch there, or a non-finite got where
// want is finite, counts as err = +inf.
inline constexpr double kScaleFloor = 1e-4;
struct Metric {
  double err = 0;
  double scale = 1;         // the worst entry's row scale
  std::int64_t worst = -1;  // index of the worst entry
  std::int64_t nonfinite_mismatches = 0;
  std::string describe_worst(const std::vector<double>& got, const std::vector<double>& want) const;
};
Metric metric(const std::vector<double>& got, const std::vector<double>& want,
              std::int64_t row = 0);

// The LSE metric: err = max_i |got_i - want_i| / max(1, |want_i|) (nats,
// relative above 1), non-finite entries as above. Judged by lse_tolerance().
Metric lse_metric(const std::vector<double>& got, const std::vector<double>& want);

}  // namespace ref
