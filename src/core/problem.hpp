// The validated problem: one flat struct of sizes, pointers and int64 element
// strides that every backend reads (in the spirit of FlashAttention's
// Flash_fwd_params). Built once by validate_attention() at the API boundary;
// nothing below re-checks it.
#pragma once

#include <cstdint>

#include "longattn/attention.hpp"

namespace longattn::core {

enum class MaskKind : std::uint8_t { none, boolean, additive };

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

  // Masking. causal_offset = Lk - Lq: query i sees keys j <= i + causal_offset.
  bool causal = false;
  std::int64_t causal_offset = 0;
  MaskKind mask_kind = MaskKind::none;
  DType mask_dtype = DType::boolean;
  const void* mask = nullptr;
  std::int64_t mask_stride[4] = {};  // 0 on broadcast dims

  // Sinks: float32 [Hq], natural-log units; nullptr = none.
  const float* sinks = nullptr;
  std::int64_t sinks_stride = 1;

  float scale = 1.f;       // softmax scale on q.k
  float scale_log2 = 1.f;  // scale * log2(e): kernels work in base 2

  // Visible (query, key) pairs inside [q0,q1) x [k0,k1) under the causal
  // rule alone (array masks are not counted), for FLOP counts and costs.
  double visible_pairs(std::int64_t q0, std::int64_t q1, std::int64_t k0, std::int64_t k1) const;
  // 2 * B * Hq * (D + Dv) per visible pair: the two matrix products.
  double flops(std::int64_t q0, std::int64_t q1, std::int64_t k0, std::int64_t k1) const;
  // Last key (exclusive) that query row `qi` can see under the causal rule.
  std::int64_t key_end(std::int64_t qi) const {
    if (!causal) return Lk;
    const std::int64_t e = qi + causal_offset + 1;
    return e < 0 ? 0 : (e > Lk ? Lk : e);
  }
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
