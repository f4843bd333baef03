// The CPU kernel's vector helpers and matrix products (part of kernel_impl.hpp,
// compiled once per build inside that build's namespace LONGATTN_KERNEL_NS):
// 2^x on vectors; the float32 register-blocked products (6 x 16 on AVX2,
// 6 x 64 on AVX-512, scalar otherwise); the bfloat16-pair products of the
// BF16 build (vdpbf16ps) and of the AMX build (TDPBF16PS on tiles).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__AVX2__)
#include <immintrin.h>
#endif
#if defined(LONGATTN_KERNEL_AMX)
#include "cpu/amx_tiles.hpp"
#endif

#include "core/problem.hpp"
#include "core/state.hpp"
#include "cpu/kernel.hpp"

namespace longattn::cpu::LONGATTN_KERNEL_NS {
namespace {
// Keys per tile. The AVX-512 builds take 128: the per-row work of a tile
// (the running max, the rescale of O, P V's loads and stores of O, the
// mask and softmax set-up) then weighs half as much per key, while Q K^T
// still walks K^T in panels of 64 columns. AMX needs it most (its products
// are so fast that this work would weigh twice as much at 64); on the
// float32 and vdpbf16ps builds it measured 3-10% faster on a Zen 5 (every
// row but the dense float32 one, which was level) and up to ~10% on a
// Xeon's causal float32 rows (docs/BENCHMARKS.md). The AVX2 and portable
// builds keep kKeyTile (64), last tuned on an AVX2-only Zen 3.
// LONGATTN_AMX_KEY_TILE (AMX) and LONGATTN_KEY_TILE (the others), each a
// multiple of 32, override it for A/B runs.
#if defined(LONGATTN_KERNEL_AMX) && defined(LONGATTN_AMX_KEY_TILE)
inline constexpr int kKeys = LONGATTN_AMX_KEY_TILE;
#elif !defined(LONGATTN_KERNEL_AMX) && defined(LONGATTN_KEY_TILE)
inline constexpr int kKeys = LONGATTN_KEY_TILE;
#elif defined(__AVX512F__)
inline constexpr int kKeys = 128;
#else
inline constexpr int kKeys = kKeyTile;
#endif
static_assert(kKeys % 32 == 0);
// Rows of a work item (kernel.hpp: kRowTarget); LONGATTN_AMX_ROW_TARGET
// overrides it in the AMX build for A/B runs.
#if defined(LONGATTN_KERNEL_AMX) && defined(LONGATTN_AMX_ROW_TARGET)
inline constexpr int kItemRows = LONGATTN_AMX_ROW_TARGET;
#else
inline constexpr int kItemRows = kRowTarget;
#endif

using core::MaskKind;
using core::Problem;
using core::StateView;

typedef float v8f __attribute__((vector_size(32)));
typedef std::int32_t v8i __attribute__((vector_size(32)));

inline v8f load8(const float* p) {
  v8f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store8(float* p, v8f v) { std::memcpy(p, &v, sizeof v); }
inline v8f splat(float x) { return v8f{x, x, x, x, x, x, x, x}; }
inline v8f vmax(v8f a, v8f b) { return a > b ? a : b; }

// 2^x for base-2 logits: round-to-nearest split x = n + f, |f| <= 1/2, a
// degree-6 polynomial for 2^f (relative error ~2e-7), n into the exponent.
// -inf (and anything below -126) gives exactly 0 so masked keys add
// nothing; NaN stays NaN so NaN inputs propagate. On 8-float vectors (the
// AVX2 and portable softmax; the AVX-512 builds have exp2_16).
inline v8f exp2v(v8f x) {
  using VF = v8f;
  using VI = v8i;
  const VF lo = VF{} - 126.f, hi = VF{} + 127.f;
  const VF magic = VF{} + 12582912.f;  // 1.5 * 2^23: adding it rounds to an integer
  VF xc = x > lo ? x : lo;
  xc = xc < hi ? xc : hi;
  const VF t = xc + magic;
  const VF n = t - magic;
  const VF f = xc - n;
  VI ni;
  std::memcpy(&ni, &t, sizeof ni);
  ni -= 0x4B400000;
  VF poly = VF{} + 1.535336188319500e-4f;
  poly = poly * f + 1.339887440266574e-3f;
  poly = poly * f + 9.618437357674640e-3f;
  poly = poly * f + 5.550332471162809e-2f;
  poly = poly * f + 2.402264791363012e-1f;
  poly = poly * f + 6.931472028550421e-1f;
  poly = poly * f + 1.f;
  VI bits;
  std::memcpy(&bits, &poly, sizeof bits);
  bits += ni << 23;
  VF r;
  std::memcpy(&r, &bits, sizeof r);
  r = x < lo ? VF{} : r;
  return x != x ? x : r;
}

// The scalar 2^x of the running state's rules (core::online_step and
// merge_factors): 0 at -inf, and 1 at 0 without the library call, as most
// tiles of a long row leave its max where it was (2^(m - m) is exactly 1).
inline float exp2s(float x) { return x == -INFINITY ? 0.f : x == 0.f ? 1.f : std::exp2(x); }

// Walks C[M x N] (M % 6 == 0, N % 16 == 0) in blocks of 6 rows x 16 NV
// columns, the first NV of the list for as many columns as it covers, then
// the next for the rest, and calls block.template operator()<NV>(i, j) for
// each block at row i, column j. The list must end with 1.
template <int NV, int... Narrower, class Block>
inline void for_blocks(int M, int N, Block&& block, int j = 0) {
  for (; j + 16 * NV <= N; j += 16 * NV)
    for (int i = 0; i < M; i += 6) block.template operator()<NV>(i, j);
  if constexpr (sizeof...(Narrower) > 0) for_blocks<Narrower...>(M, N, block, j);
}

// C[6 x 16] (+)= A[6 x K] . B[K x 16]; A row-major (lda), B row-major (ldb).
// 12 accumulators + 2 B vectors + 1 broadcast fill the 16 AVX registers.
template <bool kAccumulate>
inline void micro_6x16(int K, const float* A, std::int64_t lda, const float* Bm, std::int64_t ldb,
                       float* C, std::int64_t ldc) {
  v8f c[6][2];
  for (int r = 0; r < 6; ++r) {
    c[r][0] = kAccumulate ? load8(C + r * ldc) : splat(0.f);
    c[r][1] = kAccumulate ? load8(C + r * ldc + 8) : splat(0.f);
  }
  for (int k = 0; k < K; ++k) {
    const v8f b0 = load8(Bm + k * ldb), b1 = load8(Bm + k * ldb + 8);
    for (int r = 0; r < 6; ++r) {
      const v8f a = splat(A[r * lda + k]);
      c[r][0] += a * b0;
      c[r][1] += a * b1;
    }
  }
  for (int r = 0; r < 6; ++r) {
    store8(C + r * ldc, c[r][0]);
    store8(C + r * ldc + 8, c[r][1]);
  }
}

#if defined(__AVX512F__)
typedef float v16f __attribute__((vector_size(64)));

// A 16-float vector from and to memory. By intrinsic, not memcpy: GCC 13 lowers a
// 64-byte memcpy into an element of a local vector array to a copy through
// the stack (micro_6xv below).
inline v16f load16(const float* p) { return v16f(_mm512_loadu_ps(p)); }
inline void store16(float* p, v16f x) { _mm512_storeu_ps(p, __m512(x)); }
// vmaxps and vrndscaleps by their all-lanes masked intrinsics: GCC 12's
// unmasked ones pass an uninitialized vector as the merge source, which
// -Wmaybe-uninitialized (an error here) reports; with every lane selected
// they compile to the unmasked instruction.
inline __m512 max512(__m512 a, __m512 b) { return _mm512_mask_max_ps(a, 0xFFFF, a, b); }
inline __m512 round512(__m512 x) {
  return _mm512_mask_roundscale_ps(x, 0xFFFF, x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
// Horizontal max and sum of 16 lanes, halving the width each step (the
// halves by __builtin_shufflevector: a memcpy of half a vector may go
// through the stack, as above, and GCC 12's _mm512_castps512_ps256 and
// _mm512_reduce_* trip the warning just described). hmax may drop a NaN
// lane; its callers look for NaN themselves.
inline __m256 low256(v16f x) {
  return __m256(__builtin_shufflevector(x, x, 0, 1, 2, 3, 4, 5, 6, 7));
}
inline __m256 high256(v16f x) {
  return __m256(__builtin_shufflevector(x, x, 8, 9, 10, 11, 12, 13, 14, 15));
}
inline float hmax(v16f x) {
  const __m256 m8 = _mm256_max_ps(low256(x), high256(x));
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m8), _mm256_extractf128_ps(m8, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  return _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
}
inline float hsum(v16f x) {
  const __m256 s8 = _mm256_add_ps(low256(x), high256(x));
  __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(s4, _mm_movehdup_ps(s4)));
}

// 2^x on 16 lanes for the softmax's exponents (score - max: at most a
// rounding error above 0, -inf for a masked key, NaN carried), in AVX-512's
// own instructions: about 10 operations a vector where exp2v takes 21
// (its clamps and selects are a compare and a blend each). x = n + f with
// n = round(x), |f| <= 1/2; 2^f by a degree-5 polynomial with p(0) = 1
// (relative error 1.7e-7 in float32, where exp2v's degree 6 gives
// 0.8e-7: both at float32's own precision); 2^n by VSCALEFPS, under a
// mask that zeroes the lanes below -126 (never a denormal; -inf gives 0)
// and keeps NaN lanes (the compare is unordered-true), so NaN stays NaN.
// No clamps: a lane the mask drops may compute anything. +inf gives NaN
// (f = inf - inf), which a softmax exponent never is unless the row
// already holds a NaN score.
inline v16f exp2_16(v16f x) {
  const __m512 xv = __m512(x);
  const __m512 n = round512(xv);
  const __m512 f = _mm512_sub_ps(xv, n);
  __m512 p = _mm512_set1_ps(1.326472731e-3f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.671512991e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.550733581e-2f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.402224243e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931470037e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.f));
  const __mmask16 keep = _mm512_cmp_ps_mask(xv, _mm512_set1_ps(-126.f), _CMP_NLT_UQ);
  return v16f(_mm512_maskz_scalef_ps(keep, p, n));
}
// Whether any lane of the NV vectors is NaN.
template <int NV>
inline bool any_nan(const v16f (&x)[NV]) {
  __mmask16 nan = 0;
  for (int v = 0; v < NV; ++v) nan |= _mm512_cmp_ps_mask(__m512(x[v]), __m512(x[v]), _CMP_UNORD_Q);
  return nan != 0;
}

// C[6 x 16 NV] (+)= A[6 x K] . B[K x 16 NV]: with NV = 4, 24 accumulators,
// 4 B vectors and a broadcast in the 32 AVX-512 registers, so each B load
// and each broadcast feeds 6 or 4 FMAs of 16 lanes (the 6 x 16 AVX2 block
// issues one FMA of 8 lanes per load or broadcast).
template <bool kAccumulate, int NV>
inline void micro_6xv(int K, const float* A, std::int64_t lda, const float* Bm, std::int64_t ldb,
                      float* C, std::int64_t ldc) {
  // Loads and stores by intrinsic, not memcpy into vector arrays: GCC 13
  // lowered each 64-byte memcpy of B to a copy into a stack array that the
  // FMAs then read back (four stores and four reloads beside each step's 24
  // FMAs; GCC 12 kept B in registers), and the Xeon's float32 rows ran at
  // 0.82-0.92x PyTorch's.
  __m512 c[6][NV];
  for (int r = 0; r < 6; ++r)
    for (int v = 0; v < NV; ++v)
      c[r][v] = kAccumulate ? _mm512_loadu_ps(C + r * ldc + 16 * v) : _mm512_setzero_ps();
  for (int k = 0; k < K; ++k) {
    __m512 b[NV];
    for (int v = 0; v < NV; ++v) b[v] = _mm512_loadu_ps(Bm + k * ldb + 16 * v);
    for (int r = 0; r < 6; ++r) {
      // A broadcast straight from memory (a load, no arithmetic). Written
      // as v16f{} + x it was an add of x and 0 (not an identity: -0 + 0 is
      // +0) and a register broadcast, which on Intel cores take the ports
      // of the FMAs (the Xeon's dense float32 row ran at 0.65x PyTorch's).
      const __m512 a = _mm512_set1_ps(A[r * lda + k]);
      for (int v = 0; v < NV; ++v) c[r][v] = _mm512_fmadd_ps(a, b[v], c[r][v]);
    }
  }
  for (int r = 0; r < 6; ++r)
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(C + r * ldc + 16 * v, c[r][v]);
}
#endif

#if defined(__AVX512BF16__)
// bfloat16 products with float32 sums (vdpbf16ps: each 32-bit lane takes a
// pair of bfloat16 values along K, two products per lane and step).
// A[6][KP] and B[KP][N] hold such pairs, C[6 x 16 NV] is float32:
// C (+)= sum over pairs of A pair . B pair.
template <bool kAccumulate, int NV>
inline void micro_bf16(int KP, const std::uint32_t* A, std::int64_t lda, const std::uint32_t* Bm,
                       std::int64_t ldb, float* C, std::int64_t ldc) {
  __m512 c[6][NV];
  for (int r = 0; r < 6; ++r)
    for (int v = 0; v < NV; ++v)
      c[r][v] = kAccumulate ? _mm512_loadu_ps(C + r * ldc + 16 * v) : _mm512_setzero_ps();
  for (int k = 0; k < KP; ++k) {
    __m512bh b[NV];
    for (int v = 0; v < NV; ++v)
      b[v] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(Bm + k * ldb + 16 * v));
    for (int r = 0; r < 6; ++r) {
      const __m512bh a =
          reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(A[r * lda + k])));
      for (int v = 0; v < NV; ++v) c[r][v] = _mm512_dpbf16_ps(c[r][v], a, b[v]);
    }
  }
  for (int r = 0; r < 6; ++r)
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(C + r * ldc + 16 * v, c[r][v]);
}

// C[M x N] (+)= A[M x 2 KP] . B[2 KP x N] in bfloat16 pairs, M % 6 == 0,
// N % 16 == 0.
template <bool kAccumulate>
void gemm_bf16(int M, int N, int KP, const std::uint32_t* A, std::int64_t lda,
               const std::uint32_t* Bm, std::int64_t ldb, float* C, std::int64_t ldc) {
  for_blocks<4, 1>(M, N, [&]<int NV>(int i, int j) {
    micro_bf16<kAccumulate, NV>(KP, A + i * lda, lda, Bm + j, ldb, C + i * ldc + j, ldc);
  });
}

#endif

#if defined(LONGATTN_KERNEL_AMX)
// The AMX products, on 32 rows (two tiles of 16) at a time. Tiles 0-3 hold
// a 32 x 32 block of C, 4-5 the two 16-row halves of A, 6-7 two 16-column
// panels of B (amx_tiles.hpp: every tile 16 rows x 64 bytes). Operands are
// the bfloat16-pair layouts the vdpbf16ps build uses, with K padded with
// zero pairs to a multiple of 16 pairs (one tile's depth).

// C[32 x N] = A[32 x 2 KP] . B[2 KP x N]: S = Q K^T on the first N keys
// (N % 32 == 0, N <= kKeys) of one key tile. A: Q rows as pairs (lda pairs
// a row, KP % 16 == 0), B: K^T as pairs (kKeys keys a row), C: float32
// (kKeys a row).
inline void amx_qk_32xkeys(int KP, const std::uint32_t* A, std::int64_t lda,
                           const std::uint32_t* Bm, int N, float* C) {
  const std::uint32_t* A1 = A + 16 * lda;
  for (int n = 0; n < N; n += 32)
    amx::product_32x32(A, A1, 4 * lda, Bm + n, kKeys, KP, C + n, C + 16 * kKeys + n, 4 * kKeys);
}

// C[32 x N] += A[32 x kKeys] . B[kKeys x N]: O += P V on one key tile. A: P rows
// as pairs (32 a row), B: V as pairs of keys (N a row), C: float32 (N a
// row), N % 16 == 0.
inline void amx_pv_32xn(int N, const std::uint32_t* A, const std::uint32_t* Bm, float* C) {
  constexpr int KP = kKeys / 2;
  const std::int64_t sa = KP * 4, sb = std::int64_t{N} * 4, sc = std::int64_t{N} * 4;
  const std::uint32_t* A1 = A + 16 * KP;
  float* C1 = C + 16 * std::int64_t{N};
  int n = 0;
  for (; n + 32 <= N; n += 32) {
    amx::load_32x32(C + n, C1 + n, sc);
    amx::add_products_32x32(A, A1, sa, Bm + n, N, KP);
    amx::store_32x32(C + n, C1 + n, sc);
  }
  if (n < N) {  // an odd number of 16-column panels: the last one alone
    LA_TILE_LOAD(0, C + n, sc);
    LA_TILE_LOAD(2, C1 + n, sc);
    for (int k = 0; k < KP; k += 16) {
      LA_TILE_LOAD(4, A + k, sa);
      LA_TILE_LOAD(5, A1 + k, sa);
      LA_TILE_LOAD(6, Bm + k * N + n, sb);
      LA_TILE_DPBF16PS(0, 4, 6);
      LA_TILE_DPBF16PS(2, 5, 6);
    }
    LA_TILE_STORE(0, C + n, sc);
    LA_TILE_STORE(2, C1 + n, sc);
  }
}
#endif

// C[M x N] (+)= A[M x K] . B[K x N] with M % 6 == 0, N % 16 == 0.
template <bool kAccumulate>
void gemm(int M, int N, int K, const float* A, std::int64_t lda, const float* Bm, std::int64_t ldb,
          float* C, std::int64_t ldc) {
#if defined(__AVX512F__)
  // 64 columns at a time, then what is left in 32s and 16s (a head dim that
  // is not a multiple of 64).
  for_blocks<4, 2, 1>(M, N, [&]<int NV>(int i, int j) {
    micro_6xv<kAccumulate, NV>(K, A + i * lda, lda, Bm + j, ldb, C + i * ldc + j, ldc);
  });
#else
  for_blocks<1>(M, N, [&]<int>(int i, int j) {
    micro_6x16<kAccumulate>(K, A + i * lda, lda, Bm + j, ldb, C + i * ldc + j, ldc);
  });
#endif
}

}  // namespace
}  // namespace longattn::cpu::LONGATTN_KERNEL_NS
