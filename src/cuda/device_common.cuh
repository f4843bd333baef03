// Device helpers shared by the kernels: element conversions, masking, the
// row epilogue (final output / running state / split-K partial), and the
// sm_80 tensor-core primitives (cp.async, ldmatrix, mma.sync).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <climits>
#include <cstdint>
#include <type_traits>

#include "core/state.hpp"
#include "cuda/kernel_params.hpp"

namespace longattn::cuda {

using i64 = std::int64_t;

// ---- element conversions ---------------------------------------------------

template <typename T>
__device__ __forceinline__ float to_f(T x);
template <>
__device__ __forceinline__ float to_f<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ float to_f<__half>(__half x) {
  return __half2float(x);
}
template <>
__device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 x) {
  return __bfloat162float(x);
}

template <typename T>
__device__ __forceinline__ T from_f(float x);
template <>
__device__ __forceinline__ float from_f<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __half from_f<__half>(float x) {
  return __float2half_rn(x);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// Two floats packed into one 32-bit register of two 16-bit values (the
// lower-indexed element in the low half), as mma.sync operands expect.
template <typename T>
__device__ __forceinline__ std::uint32_t pack2(float lo, float hi);
template <>
__device__ __forceinline__ std::uint32_t pack2<__half>(float lo, float hi) {
  __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<std::uint32_t*>(&h);
}
template <>
__device__ __forceinline__ std::uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<std::uint32_t*>(&h);
}

// 2^x with the hardware approximation (ex2.approx: ~2 ulp, 2^-inf = +0),
// without the range scaling that exp2f adds.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
// The same, for the state rules of core/state.hpp.
struct FastExp2 {
  __device__ __forceinline__ float operator()(float x) const { return fast_exp2(x); }
};

// ---- masking -------------------------------------------------------------

// The array mask's element types, as the Hopper kernel decodes them: one
// branch a tile picks the type (with_mask_elem), so that the decoding of
// its elements is straight-line code.
enum class MaskElem { b8, f16, bf16, f32 };

template <MaskElem E>
constexpr int mask_elem_size = E == MaskElem::b8    ? 1
                               : E == MaskElem::f32 ? 4
                                                    : 2;

// The call's mask element type.
__host__ __device__ constexpr MaskElem mask_elem_of(const KernelParams& p) {
  if (p.mask_kind == core::MaskKind::boolean) return MaskElem::b8;
  switch (p.mask_dtype) {
    case DType::float32:
      return MaskElem::f32;
    case DType::float16:
      return MaskElem::f16;
    default:  // bfloat16 (validation admits no other additive dtype)
      return MaskElem::bf16;
  }
}

// Calls f(std::integral_constant<MaskElem, E>{}) for the call's mask type.
template <typename F>
__device__ __forceinline__ void with_mask_elem(const KernelParams& p, F&& f) {
  using E = MaskElem;
  switch (mask_elem_of(p)) {
    case E::b8:
      return f(std::integral_constant<E, E::b8>{});
    case E::f32:
      return f(std::integral_constant<E, E::f32>{});
    case E::f16:
      return f(std::integral_constant<E, E::f16>{});
    default:
      return f(std::integral_constant<E, E::bf16>{});
  }
}

// A Hopper kernel instantiation's array mask: none, any element type
// (picked per call by with_mask_elem), or one type, whose kernel then
// holds no other type's copy and decode. The four decodes in one kernel
// made ptxas keep their addresses and constants live together: one type
// took the masked D 64 kernel's spills from 364 bytes to 64 (bf16).
enum class MaskInst { none, any, b8, f16, bf16, f32 };

// with_mask_elem for an instantiation of kMI: f's one instance where kMI
// fixes the type (the launcher picked it for this call).
template <MaskInst kMI, typename F>
__device__ __forceinline__ void with_mask_elem(const KernelParams& p, F&& f) {
  using E = MaskElem;
  if constexpr (kMI == MaskInst::b8)
    f(std::integral_constant<E, E::b8>{});
  else if constexpr (kMI == MaskInst::f16)
    f(std::integral_constant<E, E::f16>{});
  else if constexpr (kMI == MaskInst::bf16)
    f(std::integral_constant<E, E::bf16>{});
  else if constexpr (kMI == MaskInst::f32)
    f(std::integral_constant<E, E::f32>{});
  else
    with_mask_elem(p, f);
}

// The base-2 term of mask element `off` of type E: 0 or -inf for a boolean
// mask, value * log2(e) for an additive one.
template <MaskElem E>
__device__ __forceinline__ float mask_elem_term(const void* mask, i64 off) {
  if constexpr (E == MaskElem::b8)
    return static_cast<const std::uint8_t*>(mask)[off] ? 0.f : -INFINITY;
  else if constexpr (E == MaskElem::f32)
    return static_cast<const float*>(mask)[off] * core::kLog2e;
  else if constexpr (E == MaskElem::f16)
    return __half2float(static_cast<const __half*>(mask)[off]) * core::kLog2e;
  else
    return __bfloat162float(static_cast<const __nv_bfloat16*>(mask)[off]) * core::kLog2e;
}

// The array mask's base-2 term for (b, h, q, j).
__device__ __forceinline__ float mask_term(const KernelParams& p, i64 b, i64 h, i64 q, i64 j) {
  const i64 off =
      b * p.mask_stride[0] + h * p.mask_stride[1] + q * p.mask_stride[2] + j * p.mask_stride[3];
  float t = 0.f;
  with_mask_elem(p, [&](auto elem) { t = mask_elem_term<decltype(elem)::value>(p.mask, off); });
  return t;
}

// The Hopper kernel's staged mask rows (a consumer's 64 rows of a key tile,
// `row_bytes` = block_n x element size each), laid out as TMA's swizzled
// boxes leave them, whichever copy fills them: row_bytes / W column blocks
// of 64 rows x W bytes (W = min(row_bytes, 128)), each warp's 16 rows a box
// of its own in each, and in a block, 16-byte chunk k of row r sits at
// chunk k ^ key(r), the key the 128-byte (W = 128: r % 8) or 64-byte
// (W = 64: (r / 2) % 4) swizzle takes from the address. The eight rows a
// warp reads at once then fall in distinct banks, and a 128-byte column
// block is the layout a wgmma descriptor reads 64 rows of (the kernel's
// bias product). Compile-time row_bytes folds these to a few operations.
__host__ __device__ constexpr int staged_box_bytes(int row_bytes) {
  return row_bytes < 128 ? row_bytes : 128;
}
// Offset of row r's first byte (in column block 0), and its swizzle key.
__device__ __forceinline__ int staged_row_off(int r, int row_bytes) {
  return r * staged_box_bytes(row_bytes);
}
__device__ __forceinline__ int staged_row_key(int r, int row_bytes) {
  const int w = staged_box_bytes(row_bytes);
  return (r * w / 128) % (w / 16);
}
// Offset of byte c of a row from its first byte, given the row's key.
__device__ __forceinline__ int staged_col_off(int c, int key, int row_bytes) {
  const int w = staged_box_bytes(row_bytes);
  return (c / w) * 64 * w + ((((c % w) >> 4) ^ key) << 4) + (c & 15);
}

// Two adjacent 16-bit additive mask elements held in a register (the
// lower key in the low half, as ldmatrix leaves them) applied to base-2
// logits x0, x1: v log2(e) added (v `mul` where the logits are on another
// scale: the Hopper kernel's folded scale).
template <MaskElem E>
__device__ __forceinline__ void apply_mask_bits(std::uint32_t bits, float& x0, float& x1,
                                                float mul = core::kLog2e) {
  static_assert(mask_elem_size<E> == 2 && E != MaskElem::b8);
  float2 v;
  if constexpr (E == MaskElem::f16)
    v = __half22float2(*reinterpret_cast<const __half2*>(&bits));
  else
    v = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&bits));
  x0 = fmaf(v.x, mul, x0);
  x1 = fmaf(v.y, mul, x1);
}

// Two adjacent mask elements of type E at `at` applied to base-2 logits
// x0, x1: a false boolean hides (-inf), an additive value v adds
// v log2(e) (v `mul`, as above).
template <MaskElem E>
__device__ __forceinline__ void apply_mask_pair(const char* at, float& x0, float& x1,
                                                float mul = core::kLog2e) {
  if constexpr (E == MaskElem::b8) {
    const uchar2 v = *reinterpret_cast<const uchar2*>(at);
    x0 = v.x ? x0 : -INFINITY;
    x1 = v.y ? x1 : -INFINITY;
  } else if constexpr (E == MaskElem::f32) {
    const float2 v = *reinterpret_cast<const float2*>(at);
    x0 = fmaf(v.x, mul, x0);
    x1 = fmaf(v.y, mul, x1);
  } else {
    apply_mask_bits<E>(*reinterpret_cast<const std::uint32_t*>(at), x0, x1, mul);
  }
}

// The base-2 terms of two adjacent mask elements stored at `at` (any
// memory): 0 / -inf for a boolean mask, value * log2(e) for an additive one.
__device__ __forceinline__ void decode_pair(const KernelParams& p, const void* at, float (&t)[2]) {
  t[0] = t[1] = 0.f;
  with_mask_elem(p, [&](auto elem) {
    apply_mask_pair<decltype(elem)::value>(static_cast<const char*>(at), t[0], t[1]);
  });
}

// Bytes of one mask element.
__device__ __forceinline__ int mask_elem_bytes(const KernelParams& p) {
  int n = 1;
  with_mask_elem(p, [&](auto elem) { n = mask_elem_size<decltype(elem)::value>; });
  return n;
}

// The terms of keys j and j + 1 of row (b, h, q), for kernels whose
// threads hold adjacent columns: one 2-element load where vec_mask says an
// even key's pair is aligned (a rectangle may start at an odd key), else
// two.
__device__ __forceinline__ void mask_pair(const KernelParams& p, i64 b, i64 h, i64 q, i64 j,
                                          float (&t)[2]) {
  const i64 off =
      b * p.mask_stride[0] + h * p.mask_stride[1] + q * p.mask_stride[2] + j * p.mask_stride[3];
  if (p.vec_mask && (j & 1) == 0 && j + 1 < p.Lk) {
    decode_pair(p, static_cast<const char*>(p.mask) + off * mask_elem_bytes(p), t);
    return;
  }
  t[0] = j < p.Lk ? mask_term(p, b, h, q, j) : -INFINITY;
  t[1] = j + 1 < p.Lk ? mask_term(p, b, h, q, j + 1) : -INFINITY;
}

// Base-2 logit of a scaled product t = scale_log2 * q.k: the soft-cap
// c2 tanh(t / c2) with c2 = softcap * log2(e), which is log2(e) times the
// natural capped logit softcap tanh(s / softcap) (the CPU kernel's rule), or
// t itself. For the float32 vector kernel: tanhf, whose error stays inside
// the float32 tolerance. The 16-bit tile kernels cap a whole tile at once
// with tanh written through ex2 and a reciprocal (scale_tile), as accurate
// for their outputs and some 25 instructions an element cheaper.
__device__ __forceinline__ float capped(const KernelParams& p, float t) {
  return p.softcap_log2 > 0.f ? p.softcap_log2 * tanhf(t / p.softcap_log2) : t;
}

// The base-2 term the causal rule, the window, the rectangle and the array
// mask add to the logit of (q, j): 0, -inf, or the additive mask's value.
__device__ __forceinline__ float extra_term(const KernelParams& p, i64 b, i64 h, i64 q, i64 j) {
  if (q >= p.q1 || j >= p.k1) return -INFINITY;
  if (!p.key_visible(q, j)) return -INFINITY;
  return p.mask_kind != core::MaskKind::none ? mask_term(p, b, h, q, j) : 0.f;
}

// ---- row state in / out -----------------------------------------------------

__device__ __forceinline__ i64 state_row(const KernelParams& p, i64 b, i64 h, i64 q) {
  return (b * p.Hq + h) * p.st_rows + (q - p.st_q0);
}
__device__ __forceinline__ i64 partial_row(const KernelParams& p, int split, i64 b, i64 h, i64 q) {
  const i64 nq = p.q1 - p.q0;
  return static_cast<i64>(split) * (p.B * p.Hq * nq) + (b * p.Hq + h) * nq + (q - p.q0);
}

// Initial (m, l) of a row; the caller loads o from st_o when in_mode is load.
__device__ __forceinline__ void initial_ml(const KernelParams& p, InMode mode, i64 b, i64 h, i64 q,
                                           float& m, float& l) {
  m = -INFINITY;
  l = 0.f;
  if (mode == InMode::sinks && p.sinks != nullptr) {
    m = core::sink_m(p.sinks[h * p.sinks_stride]);
    l = 1.f;
  } else if (mode == InMode::load) {
    const i64 r = state_row(p, b, h, q);
    m = p.st_m[r];
    l = p.st_l[r];
  }
}

// Writes (m, l) of a row in out mode `mode` (one thread per row).
__device__ __forceinline__ void store_ml(const KernelParams& p, OutMode mode, int split, i64 b,
                                         i64 h, i64 q, float m, float l) {
  if (mode == OutMode::final) {
    if (p.lse)
      p.lse[b * p.lse_stride[0] + h * p.lse_stride[1] + q * p.lse_stride[2]] =
          core::lse_base_e(m, l);
  } else if (mode == OutMode::state) {
    const i64 r = state_row(p, b, h, q);
    p.st_m[r] = m;
    p.st_l[r] = l;
  } else {
    const i64 r = partial_row(p, split, b, h, q);
    p.part_m[r] = m;
    p.part_l[r] = l;
  }
}

// Address of o[d] of a row in out mode state / partial (float32); only
// d < Dv is kept in the state.
__device__ __forceinline__ float* o_slot(const KernelParams& p, OutMode mode, int split, i64 b,
                                         i64 h, i64 q) {
  if (mode == OutMode::state) return p.st_o + state_row(p, b, h, q) * p.st_pitch;
  return p.part_o + partial_row(p, split, b, h, q) * p.width;
}

template <typename T>
__device__ __forceinline__ T* out_row(const KernelParams& p, i64 b, i64 h, i64 q) {
  return static_cast<T*>(p.o) + b * p.o_stride[0] + h * p.o_stride[1] + q * p.o_stride[2];
}

// ---- block coordinates (prefill kernels) --------------------------------------

// What one prefill block covers: query tile [qt0, qt1) of head (b, h), the
// heaviest causal tiles (last rows) first for load balance (blockIdx.x),
// and its split's (blockIdx.z) share [t_beg, t_end) of the BN-key tiles
// (counted from k0) the query tile can see: from the tile holding its first
// row's first visible key (the window's left edge) to kend. Key tiles in
// [edge_lo, edge_hi) are visible to every row of the tile (causal rule and
// window), so they need no per-row limit.
struct TileRange {
  i64 b, h, hkv, qt0, qt1, kend, t_beg, t_end;
  // In tile indices and 32-bit, for the tile loop's test: as 64-bit key
  // bounds they were spilled by the masked D 64 Hopper kernel and reloaded
  // every tile.
  int edge_lo, edge_hi;
  int split;
};
// The key side of a TileRange, once b, h, hkv, qt0 and qt1 are set.
template <int BN>
__device__ __forceinline__ void key_range(const KernelParams& p, TileRange& t) {
  t.split = blockIdx.z;
  t.kend = min(p.k1, max(p.k0, p.key_end(t.qt1 - 1)));
  const i64 kbeg = min(t.kend, max(p.k0, p.key_begin(t.qt0)));
  const i64 first = (kbeg - p.k0) / BN;  // tiles left of it are hidden from every row
  const i64 ntiles = t.kend > p.k0 ? (t.kend - p.k0 + BN - 1) / BN : 0;
  const i64 n = max(i64{0}, ntiles - first);
  const i64 per = (n + p.splits - 1) / p.splits;
  t.t_beg = first + min(n, t.split * per);
  t.t_end = first + min(n, t.split * per + per);
  // Tile it = (kt - k0) / BN crosses an edge where some row of the block
  // does not see all of [kt, kt + BN): kt + BN > kfull (past the first
  // row's last key) or kt < klow (before the last row's first key).
  const i64 kfull = min(p.k1, p.key_end(t.qt0)), klow = p.key_begin(t.qt1 - 1);
  const i64 over = kfull - p.k0 - BN, under = klow - p.k0;
  constexpr i64 kMax = INT_MAX;
  t.edge_hi = static_cast<int>(over < 0 ? 0 : min(kMax, over / BN + 1));
  t.edge_lo = static_cast<int>(under <= 0 ? 0 : min(kMax, (under + BN - 1) / BN));
}
// Whether key tile `it` (keys [k0 + it BN, k0 + it BN + BN)) needs a
// per-row limit: some row of the block does not see all of it.
__device__ __forceinline__ bool tile_crosses_edge(const TileRange& t, int it) {
  return it >= t.edge_hi || it < t.edge_lo;
}
// One head's rows (blockIdx.y = b * Hq + h), BM query rows a tile.
template <int BM, int BN>
__device__ __forceinline__ TileRange tile_range(const KernelParams& p) {
  TileRange t;
  const i64 bh = blockIdx.y;
  t.b = bh / p.Hq;
  t.h = bh % p.Hq;
  t.hkv = t.h / p.group;
  t.qt0 = p.q0 + static_cast<i64>(gridDim.x - 1 - blockIdx.x) * BM;
  t.qt1 = min(t.qt0 + BM, p.q1);
  key_range<BN>(p, t);
  return t;
}
// The same blocks in another order, heads fastest (the Hopper kernel's
// masked instantiation): the blocks in flight at once are a few query tiles
// of every head rather than every query tile of one head. For an array mask
// shared by the heads, those blocks read the same mask tiles at about the
// same time, which L2 then serves; in the other order each wave re-reads
// the whole mask from DRAM (ncu, 16K d128 bias of 512 MB over 32 heads:
// 17.6 GB from DRAM before, 3.1 GB after; the time did not change, the bias
// is not DRAM-bound, but the bandwidth is left to whatever runs beside). A
// per-head mask is read once either way. Chosen at compile time: a run-time
// choice between the two orders cost the masked consumers 72 bytes of
// register spills.
template <int BM, int BN>
__device__ __forceinline__ TileRange tile_range_heads_inner(const KernelParams& p) {
  TileRange t;
  // 32-bit: a grid holds fewer than 2^32 blocks (and 64-bit divisions here
  // cost the masked consumers register spills).
  const unsigned heads = static_cast<unsigned>(p.Hq);
  const unsigned linear = blockIdx.x + gridDim.x * blockIdx.y;
  t.h = linear % heads;
  const unsigned rest = linear / heads;
  const unsigned tile = rest % gridDim.x;
  t.b = rest / gridDim.x;
  t.hkv = t.h / p.group;
  t.qt0 = p.q0 + static_cast<i64>(gridDim.x - 1 - tile) * BM;
  t.qt1 = min(t.qt0 + BM, p.q1);
  key_range<BN>(p, t);
  return t;
}
// Packed rows (blockIdx.y = b * Hkv + hkv): the group's heads x `qrows`
// queries a tile; h is the group's first head.
template <int BN>
__device__ __forceinline__ TileRange packed_tile_range(const KernelParams& p, i64 qrows) {
  TileRange t;
  const i64 bk = blockIdx.y;
  t.b = bk / p.Hkv;
  t.hkv = bk % p.Hkv;
  t.h = t.hkv * p.group;
  t.qt0 = p.q0 + static_cast<i64>(gridDim.x - 1 - blockIdx.x) * qrows;
  t.qt1 = min(t.qt0 + qrows, p.q1);
  key_range<BN>(p, t);
  return t;
}

// ---- sm_80 primitives ------------------------------------------------------

// Programmatic dependent launch (sm_90; no-ops on older targets). A kernel
// launched with programmatic stream serialization may start as soon as
// every block of the kernel before it has called allow_dependents (or
// exited); it must call wait_for_primary before reading what that kernel
// writes: the wait returns once that kernel has completed and its memory
// is visible. This hides the second launch of a split-K decode call.
__device__ __forceinline__ void allow_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wait_for_primary() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

__device__ __forceinline__ std::uint32_t smem_addr(const void* p) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte asynchronous copy global -> shared (a shared-window address):
// the first `bytes` (0..16) from gmem, zeros after them.
__device__ __forceinline__ void cp_async16(std::uint32_t smem, const void* gmem, int bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem), "l"(gmem),
               "r"(bytes));
}
// The same to a generic pointer; zero-fills when !valid.
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  cp_async16(smem_addr(smem), gmem, valid ? 16 : 0);
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::); }
// Waits until at most N of this thread's newest commit groups are pending.
template <int N>
__device__ __forceinline__ void cp_async_wait_group() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(std::uint32_t (&r)[4], const void* smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(smem)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(std::uint32_t (&r)[4], const void* smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(smem)));
}

// D = A(16x16, row) * B(16x8, col) + D, float32 accumulators.
template <typename T>
__device__ __forceinline__ void mma16816(float (&d)[4], const std::uint32_t (&a)[4],
                                         std::uint32_t b0, std::uint32_t b1);
template <>
__device__ __forceinline__ void mma16816<__nv_bfloat16>(float (&d)[4], const std::uint32_t (&a)[4],
                                                        std::uint32_t b0, std::uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma16816<__half>(float (&d)[4], const std::uint32_t (&a)[4],
                                                 std::uint32_t b0, std::uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

}  // namespace longattn::cuda
