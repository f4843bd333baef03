// The validated problem: one flat struct of sizes, pointers and int64 element
// strides that every backend reads (in the spirit of FlashAttention's
// Flash_fwd_params). Built once by validate_attention() at the API boundary;
// nothing below re-checks it.
#pragma once

#include <cstdint>

#include "core/state.hpp"  // LONGATTN_HD: the key range is device code too
#include "longattn/attention.hpp"

namespace longattn::core {

enum class MaskKind : std::uint8_t { none, boolean, additive };

struct MaskCost;  // mask_blocks.hpp

struct Problem {
  // Sizes.
  std::int64_t B = 0;      // batch
  std::int64_t Hq = 0;     // query heads
  std::int64_t Hkv = 0;    // key/value heads; Hq % Hkv == 0
  std::int64_t Lq = 0;     // queries
  std::int64_t Lk = 0;     // keys (may be 0)
  std::int64_t D = 0;      // q/k head dim
  std::int64_t Dv = 0;     // v/out head dim
  std::int64_t group = 1;  // Hq / Hkv: query heads per KV head

  DType dtype = DType::float32;  // of q, k, v, out
  Device device = Device::cpu;

  // Tensors, strides in elements, dims in [B, H, L, D] order.
  const void* q = nullptr;
  std::int64_t q_stride[4] = {};
  const void* k = nullptr;
  std::int64_t k_stride[4] = {};
  const void* v = nullptr;
  std::int64_t v_stride[4] = {};
  void* o = nullptr;
  std::int64_t o_stride[4] = {};
  float* lse = nullptr;
  std::int64_t lse_stride[3] = {};  // optional [B,Hq,Lq]

  // Masking. The diagonal of query i is key i + causal_offset (Lk - Lq
  // bottom-right, 0 top-left). Causal: query i sees keys j <= its diagonal.
  // The window (-1 = unbounded) bounds j to [diagonal - window_left,
  // diagonal + window_right]; with causal, both rules hold.
  bool causal = false;
  std::int64_t causal_offset = 0;
  std::int64_t window_left = -1, window_right = -1;
  MaskKind mask_kind = MaskKind::none;
  DType mask_dtype = DType::boolean;
  const void* mask = nullptr;
  std::int64_t mask_stride[4] = {};  // 0 on broadcast dims
  // The mask's block summary (mask_blocks.hpp) in the backend's memory:
  // block (b, h, qb, kb) at b*mb_stride[0] + h*mb_stride[1] +
  // qb*mb_stride[2] + kb, the first two 0 where the mask broadcasts. Null:
  // none, every tile is read.
  const std::uint8_t* mask_blocks = nullptr;
  std::int64_t mb_stride[3] = {};
  // Its counts for costing (host memory); null: the mask costs as dense.
  const MaskCost* mask_cost = nullptr;

  // Sinks: float32 [Hq], natural-log units; nullptr = none.
  const float* sinks = nullptr;
  std::int64_t sinks_stride = 1;

  float scale = 1.f;       // softmax scale on q.k
  float scale_log2 = 1.f;  // scale * log2(e): kernels work in base 2
  // Logit soft-cap in natural units (s -> softcap * tanh(s / softcap) with
  // s = scale * q.k, before the mask); 0 = off.
  float softcap = 0.f;
  float softcap_log2 = 0.f;  // softcap * log2(e), finite: the cap in base 2

  // Visible (query, key) pairs inside [q0,q1) x [k0,k1) under the causal
  // rule and the window, and, with mask_cost, less the mask's hidden
  // blocks, for FLOP counts and costs.
  double visible_pairs(std::int64_t q0, std::int64_t q1, std::int64_t k0, std::int64_t k1) const;
  // The same under the causal rule and the window alone (q1 > q0, k1 > k0).
  double rule_pairs(std::int64_t q0, std::int64_t q1, std::int64_t k0, std::int64_t k1) const;
  // 2 * B * Hq * (D + Dv) per visible pair: the two matrix products.
  double flops(std::int64_t q0, std::int64_t q1, std::int64_t k0, std::int64_t k1) const;
  // How far right of its diagonal a row sees: causal and window_right
  // intersected; -1 = unbounded.
  LONGATTN_HD std::int64_t right_reach() const {
    if (causal) return 0;  // window_right >= 0 cannot widen it
    return window_right;
  }
  // Query row `qi` sees exactly the keys [key_begin(qi), key_end(qi)) (an
  // array mask may hide more); both are in [0, Lk], nondecreasing in qi, and
  // key_begin(qi) <= key_end(qi). Host and device code.
  LONGATTN_HD std::int64_t key_begin(std::int64_t qi) const {
    if (window_left < 0) return 0;
    const std::int64_t b = qi + causal_offset - window_left;
    return b < 0 ? 0 : (b > Lk ? Lk : b);
  }
  LONGATTN_HD std::int64_t key_end(std::int64_t qi) const {
    const std::int64_t r = right_reach();
    if (r < 0) return Lk;
    const std::int64_t e = qi + causal_offset + r + 1;
    return e < 0 ? 0 : (e > Lk ? Lk : e);
  }
  // Whether row qi sees key j under causal and the window.
  LONGATTN_HD bool key_visible(std::int64_t qi, std::int64_t j) const {
    const std::int64_t d = j - qi - causal_offset;  // right of the diagonal by d
    const std::int64_t r = right_reach();
    return (r < 0 || d <= r) && (window_left < 0 || -d <= window_left);
  }
  bool windowed() const { return window_left >= 0 || window_right >= 0; }
};

// Checks every argument; throws InvalidArgument / Unsupported naming the
// argument and value. `op` prefixes the messages ("longattn::attention").
Problem validate_attention(const TensorView& q, const TensorView& k, const TensorView& v,
                           const TensorView& out, const AttentionOptions& options, const char* op,
                           bool need_data);

// The largest CPU thread count any call accepts (threads = 0: all hardware
// threads).
int max_cpu_threads();

}  // namespace longattn::core
