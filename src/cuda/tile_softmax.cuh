// The per-row steps of the online softmax on a tile held in tensor-core
// accumulator layout, shared by both prefill kernels (mma.sync and wgmma):
// s[nt][e] of a thread (lane = 4 g + t4) is row g + 8 (e / 2), column
// 8 nt + 2 t4 + (e % 2). Row i in {0, 1} below means row g + 8 i; a quad of
// four lanes holds a whole row between them.
//
//   init_row:    the row's starting (m, l, o): empty, sinks or a loaded state
//   scale_tile:  base-2 logits (scaled, soft-capped), then limit_row: -inf
//                outside the row's visible columns, or mask_row: the array
//                mask too; hide_row: the whole row -inf (the Hopper kernel
//                without a soft-cap skips scale_tile and folds the scale
//                into softmax_row_p's exponent)
//   softmax_row: m' = max(m, rowmax), P = 2^(s - m'), l and O rescaled
//                (softmax_row_p + rescale_row, for kernels that overlap them)
//   pack_p:      P as the A fragment of the P V product
//   store_row:   final output + LSE, running state, or split-K partial
#pragma once

#include "cuda/device_common.cuh"

namespace longattn::cuda {

// l is kept as a per-thread partial sum over the thread's columns and reduced
// over the quad at the end, so only lane t4 == 0 starts from the initial l.
template <int NO>
__device__ __forceinline__ void init_row(const KernelParams& p, InMode mode, i64 b, i64 h, i64 q,
                                         bool valid, int t4, int i, float& m, float& l,
                                         float (&acc)[NO][4]) {
  if (valid) {
    initial_ml(p, mode, b, h, q, m, l);
  } else {
    m = -INFINITY;
    l = 0.f;
  }
  if (t4 != 0) l = 0.f;
#pragma unroll
  for (int nt = 0; nt < NO; ++nt) {
    float2 x = make_float2(0.f, 0.f);
    const int d = nt * 8 + 2 * t4;  // state_pitch keeps d + 1 inside the row
    if (mode == InMode::load && valid && d < p.Dv)
      x = *reinterpret_cast<const float2*>(p.st_o + state_row(p, b, h, q) * p.st_pitch + d);
    acc[nt][2 * i] = x.x;
    acc[nt][2 * i + 1] = x.y;
  }
}

// The columns [lo, hi) of a tile that one row sees.
struct Cols {
  int lo, hi;
};

// Columns of row q visible in the BN-key tile at kt: from the window's left
// edge up to the tile's key end `kend`, the causal diagonal and the
// window's right edge; none for rows past the rectangle.
template <int BN>
__device__ __forceinline__ Cols visible_cols(const KernelParams& p, i64 q, i64 qt1, i64 kend,
                                             i64 kt) {
  if (q >= qt1) return {0, 0};
  const i64 lo = min(max(p.key_begin(q) - kt, i64{0}), i64{BN});
  const i64 hi = min(max(min(kend, p.key_end(q)) - kt, lo), i64{BN});
  return {static_cast<int>(lo), static_cast<int>(hi)};
}

// Base-2 logits of the whole tile: scaled, then soft-capped when the call
// has a cap. The cap's test is made once a tile, outside the element loops,
// and the row steps below only hide or add: without the test hoisted, the
// compiler kept the cap's code in every element's select (masked tiles ran
// at a quarter of the unmasked speed).
// kCap false: the caller knows there is no soft-cap (no cap code).
template <bool kCap = true, int NS>
__device__ __forceinline__ void scale_tile(const KernelParams& p, float (&s)[NS][4]) {
  if (kCap && p.softcap_log2 > 0.f) {
    // c tanh(t / c) = c - 2 c / (e^(2 t / c) + 1), on the special-function
    // unit (ex2.approx, rcp.approx): its absolute error is a few c 2^-23,
    // where tanhf costs some 25 instructions an element and the 16-bit
    // kernels' soft-cap ran at a quarter of their speed. tanh.approx is as
    // cheap but its 2^-11 relative error moves a logit of 30 by 0.015.
    const float c = p.softcap_log2, k = p.scale_log2 * p.cap_exp, c2 = 2.f * c;
#pragma unroll
    for (int nt = 0; nt < NS; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[nt][e] = c - __fdividef(c2, fast_exp2(s[nt][e] * k) + 1.f);
  } else {
#pragma unroll
    for (int nt = 0; nt < NS; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[nt][e] *= p.scale_log2;
  }
}

// After scale_tile (or in place of it, on unscaled logits): columns outside
// [c.lo, c.hi) (the window, the causal diagonal or the rectangle's key end)
// become -inf.
template <int NS>
__device__ __forceinline__ void limit_row(float (&s)[NS][4], int i, int t4, Cols c) {
#pragma unroll
  for (int nt = 0; nt < NS; ++nt)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      float& x = s[nt][2 * i + e];
      const int col = nt * 8 + 2 * t4 + e;
      x = col >= c.lo && col < c.hi ? x : -INFINITY;
    }
}

// Every column of row i -inf (a row past the rectangle, or hidden by the mask).
template <int NS>
__device__ __forceinline__ void hide_row(float (&s)[NS][4], int i) {
#pragma unroll
  for (int nt = 0; nt < NS; ++nt) s[nt][2 * i] = s[nt][2 * i + 1] = -INFINITY;
}

// After scale_tile, the same with the array mask of row (b, h, q) over the
// tile's keys from kt: a hidden pair becomes -inf, an additive term is
// added (after the cap). A thread's two columns of an n-tile are adjacent
// keys, read together.
template <int NS>
__device__ __forceinline__ void mask_row(const KernelParams& p, float (&s)[NS][4], int i, int t4,
                                         Cols c, i64 b, i64 h, i64 q, i64 kt) {
  if (c.hi <= c.lo) return hide_row(s, i);  // also rows past the rectangle: no mask row to read
#pragma unroll
  for (int nt = 0; nt < NS; ++nt) {
    const int col = nt * 8 + 2 * t4;
    float t[2];
    mask_pair(p, b, h, q, kt + col, t);
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      float& x = s[nt][2 * i + e];
      x = col + e >= c.lo && col + e < c.hi ? x + t[e] : -INFINITY;
    }
  }
}

// The array mask from a copy of the row's mask in shared memory (`row`:
// its first byte, elements of type E, in the staged layout with swizzle
// key `key`, device_common.cuh), over every column: limit_row applies the
// row's column range after it where the tile needs one. Rows past the
// rectangle read zeros or rows past it; their results are never stored.
template <MaskElem E, int NS>
__device__ __forceinline__ void mask_row_staged(float (&s)[NS][4], int i, int t4, const char* row,
                                                int key, float mul) {
  constexpr int es = mask_elem_size<E>, kRowBytes = NS * 8 * es;
#pragma unroll
  for (int nt = 0; nt < NS; ++nt) {
    const int c = (nt * 8 + 2 * t4) * es;  // the pair's byte in the row
    apply_mask_pair<E>(row + staged_col_off(c, key, kRowBytes), s[nt][2 * i], s[nt][2 * i + 1],
                       mul);
  }
}

// The same for both the thread's rows of a 16-bit mask, with ldmatrix: an
// 8 x 8 block of the copy lands in the accumulator's layout (row g, keys
// 2 t4 and 2 t4 + 1), four blocks an instruction, where per-pair loads
// took one instruction a pair. The lane gives the address of one row of
// one block: `row` (row 8 (m % 2) + l % 8 of the warp's 16, m = l / 8,
// in the blocks' order in the result; its swizzle key `key`), chunk
// nt + `half` (m / 2) of it.
template <MaskElem E, int NS>
__device__ __forceinline__ void mask_tile_ldsm(float (&s)[NS][4], const char* row, int half,
                                               int key, float mul) {
  static_assert(NS % 2 == 0 && NS >= 8 && mask_elem_size<E> == 2);
  constexpr int kRowBytes = NS * 8 * 2;
#pragma unroll
  for (int nt = 0; nt < NS; nt += 2) {
    std::uint32_t r[4];
    ldmatrix_x4(r, row + staged_col_off((nt + half) * 16, key, kRowBytes));
    apply_mask_bits<E>(r[0], s[nt][0], s[nt][1], mul);
    apply_mask_bits<E>(r[1], s[nt][2], s[nt][3], mul);
    apply_mask_bits<E>(r[2], s[nt + 1][0], s[nt + 1][1], mul);
    apply_mask_bits<E>(r[3], s[nt + 1][2], s[nt + 1][3], mul);
  }
}

// Online softmax, base 2: m' = max(m, rowmax), P = 2^(s - m'), l rescaled
// and summed; returns alpha = 2^(m - m') for rescaling O. A row that has
// seen only masked keys keeps m = -inf; we then subtract 0 instead of m so
// that 2^(-inf - -inf) never turns into NaN. `scale` > 0: the tile holds
// base-2 logits / scale (the Hopper kernel's folded scale): the max is
// taken on them (scaling keeps the order) and each exponent is one FMA,
// s scale - m', where scaling the tile first took a multiply more.
template <int NS>
__device__ __forceinline__ float softmax_row_p(float (&s)[NS][4], int i, float& m, float& l,
                                               float scale = 1.f) {
  float mx = -INFINITY;
#pragma unroll
  for (int nt = 0; nt < NS; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * i], s[nt][2 * i + 1]));
  mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
  mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
  const float m_new = fmaxf(m, mx * scale);
  const core::OnlineStep st = core::online_step(m, m_new, FastExp2{});
  m = m_new;
  float sum = 0.f;
#pragma unroll
  for (int nt = 0; nt < NS; ++nt) {
    s[nt][2 * i] = fast_exp2(fmaf(s[nt][2 * i], scale, -st.shift));
    s[nt][2 * i + 1] = fast_exp2(fmaf(s[nt][2 * i + 1], scale, -st.shift));
    sum += s[nt][2 * i] + s[nt][2 * i + 1];
  }
  l = l * st.alpha + sum;
  return st.alpha;
}

template <int NO>
__device__ __forceinline__ void rescale_row(float (&acc)[NO][4], int i, float alpha) {
#pragma unroll
  for (int nt = 0; nt < NO; ++nt) {
    acc[nt][2 * i] *= alpha;
    acc[nt][2 * i + 1] *= alpha;
  }
}

// Both steps at once, for kernels that finish P V before the next tile.
template <int NS, int NO>
__device__ __forceinline__ void softmax_row(float (&s)[NS][4], float (&acc)[NO][4], int i, float& m,
                                            float& l) {
  rescale_row(acc, i, softmax_row_p(s, i, m, l));
}

// Keys [16 kk, 16 kk + 16) of P as the m16n8k16 A fragment (rows g, g + 8).
template <typename T, int NS>
__device__ __forceinline__ void pack_p(const float (&s)[NS][4], int kk, std::uint32_t (&a)[4]) {
  a[0] = pack2<T>(s[2 * kk][0], s[2 * kk][1]);
  a[1] = pack2<T>(s[2 * kk][2], s[2 * kk][3]);
  a[2] = pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
  a[3] = pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
}

// Writes row i; every lane of the quad must call it (the l reduction
// shuffles), `valid` says whether the row is inside the rectangle.
template <typename T, int NO>
__device__ __forceinline__ void store_row(const KernelParams& p, OutMode mode, int split, i64 b,
                                          i64 h, i64 q, bool valid, int t4, int i, float m, float l,
                                          const float (&acc)[NO][4]) {
  l += __shfl_xor_sync(0xffffffffu, l, 1);
  l += __shfl_xor_sync(0xffffffffu, l, 2);
  if (!valid) return;
  if (t4 == 0) store_ml(p, mode, split, b, h, q, m, l);
  if (mode == OutMode::final) {
    const float inv = core::inv_sum(l);
    T* orow = out_row<T>(p, b, h, q);
#pragma unroll
    for (int nt = 0; nt < NO; ++nt) {
      const i64 d = nt * 8 + 2 * t4;  // columns past Dv are a narrower head's padding
      if (d < p.Dv) orow[d * p.o_stride[3]] = from_f<T>(acc[nt][2 * i] * inv);
      if (d + 1 < p.Dv) orow[(d + 1) * p.o_stride[3]] = from_f<T>(acc[nt][2 * i + 1] * inv);
    }
  } else {
    float* os = o_slot(p, mode, split, b, h, q);
#pragma unroll
    for (int nt = 0; nt < NO; ++nt)
      if (nt * 8 + 2 * t4 < p.Dv)
        *reinterpret_cast<float2*>(os + nt * 8 + 2 * t4) =
            make_float2(acc[nt][2 * i], acc[nt][2 * i + 1]);
  }
}

}  // namespace longattn::cuda
