// An independent float64 attention: the oracle every test compares against.
//
// It shares no code with longattn (no headers, no state type, no dtype
// conversions) and is written for obviousness, not speed: for each query row
// it collects the visible scores, takes their maximum, then sums exp(s - max)
// in a second pass (the textbook two-pass softmax), all in double.
//
// Semantics (the ones longattn documents in include/longattn/attention.hpp):
// - s_ij = scale * q_i . k_j (+ additive mask value); with softcap > 0 the
//   first term is capped: softcap * tanh(scale * q_i . k_j / softcap).
// - Causal is bottom-right aligned: query i sees key j iff j <= i + (Lk - Lq);
//   or, with causal_top_left, iff j <= i (PyTorch's is_causal).
// - Window (left, right; -1 = no bound on that side): with the diagonal
//   d = i + (Lk - Lq), or d = i with causal_top_left, query i sees key j
//   only if j >= d - left and j <= d + right. Causal and the window combine.
// - Boolean mask: 0 = drop, non-zero = keep. Additive mask: -inf = drop,
//   anything else is added to the scaled logit. Causal and a mask combine.
// - GQA: query head h reads KV head h / (Hq / Hkv).
// - Sinks: one extra logit per query head in the denominator only.
// - LSE is base e. A row with no visible key gives O = 0 and LSE = -inf, or
//   with sinks O = 0 and LSE = sink.
// - NaN propagates the IEEE way: a NaN score (from q or k) makes the whole
//   row NaN; a NaN in v[j][d] makes column d of every row that sees key j NaN.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace ref {

enum class MaskType { none, boolean, additive };

struct Inputs {
  std::int64_t B = 1, Hq = 1, Hkv = 1, Lq = 1, Lk = 1, D = 1, Dv = 1;
  std::vector<double> q;  // contiguous [B, Hq, Lq, D]
  std::vector<double> k;  // contiguous [B, Hkv, Lk, D]
  std::vector<double> v;  // contiguous [B, Hkv, Lk, Dv]
  double scale = 1.0;
  double softcap = 0.0;  // 0: off
  bool causal = false;
  bool causal_top_left = false;                      // the diagonal of causal and of the window
  std::int64_t window_left = -1, window_right = -1;  // -1: no bound
  MaskType mask_type = MaskType::none;
  // Contiguous mask of shape mask_shape; each dim is 1 (broadcast) or the
  // full size of [B, Hq, Lq, Lk]. Boolean masks hold 0 / 1.
  std::array<std::int64_t, 4> mask_shape{1, 1, 1, 1};
  std::vector<double> mask;
  std::vector<double> sinks;  // empty, or [Hq]
};

struct Outputs {
  std::vector<double> o;    // contiguous [B, Hq, Lq, Dv]
  std::vector<double> lse;  // contiguous [B, Hq, Lq], base e
};

// Whether query row i may see key j (causal rule, window and mask), and the mask's
// additive term for it (0 for boolean masks or none).
bool visible(const Inputs& in, std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j,
             double* additive);

// One output row: o[0..Dv) and its LSE.
void attention_row(const Inputs& in, std::int64_t b, std::int64_t h, std::int64_t i, double* o,
                   double* lse);

// Every row.
Outputs attention(const Inputs& in);

// Throws std::invalid_argument when the sizes of the vectors do not match the
// shape fields (catches mistakes in test code, not in the library).
void check_inputs(const Inputs& in);

}  // namespace ref
