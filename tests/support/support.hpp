// Test support: describe a case, draw its inputs, run longattn, compare with
// the float64 reference (tests/reference) by one metric and one tolerance
// table (tests/reference/metric.hpp).
//
// The steps are separate so that other backends can reuse them:
//   CaseData d(c);                 // host buffers + reference inputs
//   Tensors t = d.host_views();    // or d.views_at(base_of, Device::cuda)
//   longattn::attention(t.q, t.k, t.v, t.out, d.options(t, base));
//   (copy device outputs back into d.out.bytes / d.lse.bytes)
//   Comparison r = compare(d);     // against ref::attention, cached
//
// Every buffer is a whole allocation (`bytes`) with a view into it; bytes the
// view does not cover are filled with NaN (inputs: reading them poisons the
// result) or a guard pattern (outputs: writing them is caught by compare()).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "longattn/longattn.hpp"
#include "metric.hpp"
#include "reference.hpp"

namespace lt {

using longattn::Device;
using longattn::DType;
using longattn::TensorView;

// ---- dtype conversions (our own, independent of the library) ------------

std::uint16_t float_to_half(float f);  // round to nearest even
float half_to_float(std::uint16_t h);
std::uint16_t float_to_bf16(float f);  // round to nearest even
float bf16_to_float(std::uint16_t h);
// x rounded to a float dtype and back (boolean: 0 or 1).
double round_to(DType t, double x);
// Element `index` (in elements from `base`) of a dtype array, as a double.
double load(DType t, const void* base, std::int64_t index);
void store(DType t, void* base, std::int64_t index, double x);

// ---- the one metric and the one tolerance table -------------------------

// They live with the oracle (tests/reference/metric.hpp), where the longattn
// tool's check uses them too; the suite names them here.
using ref::kScaleFloor;
using ref::lse_metric;
using ref::lse_tolerance;
using ref::metric;
using ref::Metric;
// The table's tolerance (ref::tolerance) for outputs stored in `t`.
// `keys`: the most keys a row sees (widens float32 for long rows; see
// ref::tolerance).
double tolerance(DType t, std::int64_t keys = 0);

// ---- case description -----------------------------------------------------

enum class MaskKind { none, boolean, additive };

enum class Layout {
  bhld,             // contiguous [B, H, L, X] everywhere
  blhd,             // q, k, v, out stored [B, L, H, X] (permuted strides)
  cache_slice,      // k, v: keys [5, 5 + Lk) of a [B+1, H, Lk+16, X] cache
                    // starting at batch 1; q/out/lse rows padded
  cache_slice_blhd  // k, v: keys [5, 5 + Lk) of a [B, Lk+16, H, X] cache
};

const char* to_string(MaskKind m);
const char* to_string(Layout l);

struct Case {
  std::int64_t B = 1, Hq = 1, Hkv = 1, Lq = 1, Lk = 1, D = 64;
  std::int64_t Dv = 0;  // 0: same as D
  DType dtype = DType::float32;
  bool causal = false;
  bool causal_top_left = false;  // PyTorch's is_causal alignment (else bottom-right)
  // Sliding window around the diagonal (-1: unbounded), as AttentionOptions.
  std::int64_t window_left = -1, window_right = -1;
  // q, k, v and out start one element past a 16-byte boundary (otherwise
  // every view of a contiguous layout is 16-byte aligned, as real tensors
  // are), so the kernels must take their element-wise paths.
  bool misaligned = false;
  MaskKind mask = MaskKind::none;
  // true: that dim of [B, Hq, Lq, Lk] is broadcast (size 1, or stride 0 when
  // mask_stride0 is set).
  std::array<bool, 4> mask_broadcast{false, false, false, false};
  bool mask_stride0 = false;
  DType additive_dtype = DType::float32;  // dtype of an additive mask
  double mask_drop = 0.25;                // probability that a key is dropped
  bool sinks = false;
  bool lse = true;  // ask for LSE
  Layout layout = Layout::bhld;
  std::optional<double> scale;  // default 1/sqrt(D)
  float softcap = 0;            // AttentionOptions::softcap (0 = off)
  double qk_std = 1.0;          // q, k ~ N(0, qk_std^2); v ~ N(0, 1)
  std::uint64_t seed = 1;

  std::int64_t dv() const { return Dv > 0 ? Dv : D; }
  double effective_scale() const;
  std::string name() const;  // for test output
};

// Whether LONGATTN_TEST_SMALL is set (sanitizer builds): shrink big cases.
bool small_tests();

// ---- buffers and data -----------------------------------------------------

struct Buffer {
  std::vector<std::byte> bytes;  // the whole host allocation
  TensorView view;               // what the library sees (data points into bytes)
  std::int64_t offset = 0;       // element offset of view.data from bytes.data()
  bool output = false;

  bool present() const { return !bytes.empty(); }
  std::int64_t elements() const;
  // The same view over another allocation of bytes.size() bytes (a device copy).
  TensorView view_at(void* base, Device device) const;
  // For outputs: fill the view with NaN and everything else with the guard.
  void poison_output();
  // For outputs: how many bytes outside the view differ from the guard.
  std::int64_t guard_damage() const;
  // The view's elements in logical (row-major) order, as doubles.
  std::vector<double> read() const;
};

struct Tensors {
  TensorView q, k, v, out, mask, sinks, lse;
};

class CaseData {
 public:
  explicit CaseData(const Case& c);

  Case c;
  Buffer q, k, v, out, mask, sinks, lse;
  ref::Inputs in;  // the rounded inputs, for the reference

  Tensors host_views() const;
  // Views over other allocations (one per present buffer, same byte size).
  Tensors views_at(const std::function<void*(const Buffer&)>& base_of, Device device) const;
  // The present buffers (inputs and outputs), e.g. to mirror on a device.
  std::vector<Buffer*> buffers();

  // `base` with scale, causal, mask, sinks and lse set from the case.
  longattn::AttentionOptions options(const Tensors& t, longattn::AttentionOptions base = {}) const;

  // Overwrite one input element in both the buffer and the reference (the
  // value is rounded to the dtype first). Indices are logical: q [b,h,i,d],
  // k/v [b,hkv,j,d], mask in its own (possibly broadcast) shape.
  void set_q(std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t d, double x);
  void set_k(std::int64_t b, std::int64_t h, std::int64_t j, std::int64_t d, double x);
  void set_v(std::int64_t b, std::int64_t h, std::int64_t j, std::int64_t d, double x);
  void set_mask(std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j, double x);
  void set_sink(std::int64_t h, double x);

  // Output buffers back to NaN + guard (done by the constructor too).
  void reset_outputs();
  // The reference result (computed once, recomputed after a set_*).
  const ref::Outputs& expected();

 private:
  std::optional<ref::Outputs> expected_;
};

// ---- run and compare -------------------------------------------------------

struct Comparison {
  bool ok = false;
  Metric o, lse;
  double tol = 0;
  std::int64_t guard_damage = 0;
  std::string message;  // one line: case, errors, tolerance, worst entries
};

// Runs longattn::attention on the host buffers.
void run(CaseData& d, const longattn::AttentionOptions& base = {});
// Compares d.out (and d.lse if present) with the reference; `tol` overrides
// the table (only with a reason at the call site).
Comparison compare(CaseData& d, std::optional<double> tol = std::nullopt);

// A policy that forces the chunked path with the given key chunk (and query
// group, if > 0) and no time budget.
longattn::Policy chunked_policy(std::int64_t chunk_keys, std::int64_t query_rows = 0);
// A policy that never chunks.
longattn::Policy single_pass_policy();

}  // namespace lt
