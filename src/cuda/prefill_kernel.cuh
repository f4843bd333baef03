// Tensor-core prefill kernel (FlashAttention-2 style, sm_80+; runs on H100
// through mma.sync). One block = block_m query rows of one (b, h) against the
// keys of its split of the rectangle; each warp owns 16 rows.
//
//   for each key tile (block_n keys):
//     S = Q K^T                      (mma m16n8k16, K from shared memory)
//     t = S * scale_log2 (+ mask)    (base 2; mask only on tiles that need it)
//     m' = max(m, rowmax t); P = 2^(t - m'); l = l 2^(m - m') + rowsum P
//     O = O 2^(m - m') + P V         (P reused from the S registers as the A operand)
//
// K and V tiles stream through shared memory with cp.async: V(i) loads while
// S(i) is computed, K(i+1) loads while P(i) V(i) is computed.
#pragma once

#include <cuda_runtime.h>

#include "core/mask_blocks.hpp"
#include "cuda/check.hpp"
#include "cuda/device_common.cuh"
#include "cuda/smem_limit.hpp"
#include "cuda/tile_softmax.cuh"

namespace longattn::cuda {

// Copies rows [0, kRows) of a [rows, ncols] tile into shared memory (row
// stride kLds, D columns); rows >= nvalid and columns >= ncols (a head
// narrower than the kernel's width D) become zeros, so that padding never
// carries NaN into P V nor adds to Q K^T. `vec`: 16-byte cp.async (ncols a
// multiple of 8); else element loads with any strides.
template <typename T, int D, int kLds, int kRows, int kThreads>
__device__ __forceinline__ void load_tile(T* s, const T* g, i64 row_stride, i64 col_stride,
                                          i64 nvalid, i64 ncols, bool vec, int tid) {
  constexpr int C = D / 8;
  for (int idx = tid; idx < kRows * C; idx += kThreads) {
    const int r = idx / C, c = idx % C;
    T* dst = s + r * kLds + c * 8;
    const bool valid = r < nvalid && c * 8 < ncols;
    if (vec) {
      cp_async16(dst, valid ? g + r * row_stride + c * 8 : g, valid);
    } else {
      alignas(16) T tmp[8];
#pragma unroll
      for (int e = 0; e < 8; ++e)
        tmp[e] = valid && c * 8 + e < ncols ? g[r * row_stride + (c * 8 + e) * col_stride]
                                            : from_f<T>(0.f);
      *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(tmp);
    }
  }
}

template <typename T, int D>
__global__ void __launch_bounds__(tc_config(D).warps * 32)
    prefill_kernel(const __grid_constant__ KernelParams p) {
  constexpr TcConfig cfg = tc_config(D);
  constexpr int MT = cfg.m_tiles, WR = 16 * MT;  // m-tiles and rows per warp
  constexpr int BM = cfg.block_m, BN = cfg.block_n, NT = cfg.warps * 32;
  constexpr int LDS = D + 8;
  constexpr int KS = D / 16;  // k-steps of Q K^T
  constexpr int NS = BN / 8;  // n-tiles of S
  constexpr int NO = D / 8;   // n-tiles of O
  static_assert(BM == WR * cfg.warps && D % 16 == 0 && BN % 16 == 0);

  extern __shared__ uint4 smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);
  constexpr int ST = cfg.stages;
  static_assert(ST == 1 || ST == 2);
  T* const sK0 = sQ + BM * LDS;        // ST K buffers
  T* const sV0 = sK0 + ST * BN * LDS;  // ST V buffers

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane >> 2, t4 = lane & 3;
  const TileRange tr = tile_range<BM, BN>(p);
  const i64 b = tr.b, h = tr.h, hkv = tr.hkv, qt0 = tr.qt0, qt1 = tr.qt1, kend = tr.kend;
  const i64 t_beg = tr.t_beg, t_end = tr.t_end;
  // The first key tile from `it` on that the array mask does not hide from
  // every row of the block (its block summary, mask_blocks.hpp): hidden
  // tiles are neither loaded nor computed.
  auto next_live = [&](i64 it) {
    if (p.mask_blocks == nullptr) return it;
    while (it < t_end) {
      const i64 kt = p.k0 + it * BN;
      if (!core::mask_hides(p, tr.b, tr.h, tr.h + 1, tr.qt0, tr.qt1, kt, min(kt + BN, tr.kend)))
        break;
      ++it;
    }
    return it;
  };
  const i64 first = next_live(t_beg);
  const int split = tr.split;

  const InMode in_mode = p.splits > 1 ? InMode::empty : p.in_mode;
  const OutMode out_mode = p.splits > 1 ? OutMode::partial : p.out_mode;

  const T* qg =
      static_cast<const T*>(p.q) + b * p.q_stride[0] + h * p.q_stride[1] + qt0 * p.q_stride[2];
  const T* kg = static_cast<const T*>(p.k) + b * p.k_stride[0] + hkv * p.k_stride[1];
  const T* vg = static_cast<const T*>(p.v) + b * p.v_stride[0] + hkv * p.v_stride[1];

  // Rows of this thread: warp*WR + mt*16 + g + 8i.
  float m[MT][2], l[MT][2];
  float acc[MT][NO][4];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const i64 q = qt0 + warp * WR + mt * 16 + g + 8 * i;
      init_row(p, in_mode, b, h, q, q < qt1, t4, i, m[mt][i], l[mt][i], acc[mt]);
    }

  // Keys [j, j + BN) of K or V into a shared-memory tile; rows at or past
  // kend read as zeros.
  auto load_k = [&](T* dst, i64 j) {
    load_tile<T, D, LDS, BN, NT>(dst, kg + j * p.k_stride[2], p.k_stride[2], p.k_stride[3],
                                 kend - j, p.D, p.vec_k, tid);
  };
  auto load_v = [&](T* dst, i64 j) {
    load_tile<T, D, LDS, BN, NT>(dst, vg + j * p.v_stride[2], p.v_stride[2], p.v_stride[3],
                                 kend - j, p.Dv, p.vec_v, tid);
  };
  if (first < t_end) {
    load_tile<T, D, LDS, BM, NT>(sQ, qg, p.q_stride[2], p.q_stride[3], qt1 - qt0, p.D, p.vec_q,
                                 tid);
    const i64 kt = p.k0 + first * BN;
    load_k(sK0, kt);
    cp_async_commit();
    if constexpr (ST == 2) {
      load_v(sV0, kt);
      cp_async_commit();
    }
  }

  const T* sQw = sQ + (warp * WR + (lane & 15)) * LDS + (lane >> 4) * 8;

  // Commit groups, in order. ST == 1: [Q K(0)], then per tile [V(i)],
  // [K(i+1)]. ST == 2: [Q K(0)], [V(0)], then per tile [K(i+1)], [V(i+1)]
  // (possibly empty), so "all but the newest group" is always the tile the
  // next step reads.
  int n = 0;  // tiles run so far
  for (i64 it = first, next = next_live(first + 1); it < t_end;
       it = next, next = next_live(next + 1), ++n) {
    const i64 kt = p.k0 + it * BN, kn = p.k0 + next * BN;
    const int buf = ST == 2 ? (n & 1) : 0;
    T* const sK = sK0 + buf * BN * LDS;
    T* const sV = sV0 + buf * BN * LDS;
    if constexpr (ST == 2) {
      cp_async_wait_group<1>();
      __syncthreads();  // K(it) (and Q) landed; every warp is done with tile it-1's buffers
      if (next < t_end) load_k(sK0 + (buf ^ 1) * BN * LDS, kn);
      cp_async_commit();
    } else {
      cp_async_wait_all();
      __syncthreads();  // K(it) (and Q) landed; every warp is done with V(it-1)
      load_v(sV, kt);
      cp_async_commit();
    }

    float s[MT][NS][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int nt = 0; nt < NS; ++nt)
        s[mt][nt][0] = s[mt][nt][1] = s[mt][nt][2] = s[mt][nt][3] = 0.f;
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
      std::uint32_t a[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) ldmatrix_x4(a[mt], sQw + mt * 16 * LDS + ks * 16);
#pragma unroll
      for (int np = 0; np < NS / 2; ++np) {
        std::uint32_t kb[4];
        ldmatrix_x4(kb, sK + (np * 16 + (lane >> 4) * 8 + (lane & 7)) * LDS + ks * 16 +
                            ((lane >> 3) & 1) * 8);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma16816<T>(s[mt][2 * np], a[mt], kb[0], kb[1]);
          mma16816<T>(s[mt][2 * np + 1], a[mt], kb[2], kb[3]);
        }
      }
    }

    // Scale to base 2; mask only tiles that cross the causal diagonal, an
    // edge of the window, the rectangle's key end, or that have an array
    // mask.
    const bool masked = p.mask_kind != core::MaskKind::none;
    const bool edge = tile_crosses_edge(tr, static_cast<int>(it));
    // The warp's rows need the mask read unless its blocks are open.
    const i64 wr0 = qt0 + warp * WR;
    const bool read_mask = masked && !core::mask_opens(p, b, h, h + 1, wr0, min(wr0 + WR, qt1), kt,
                                                       min(kt + BN, kend));
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      scale_tile(p, s[mt]);
      if (masked || edge) {
        // A per-row column range (causal, window, key end), in 32-bit.
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          const i64 q = qt0 + warp * WR + mt * 16 + g + 8 * i;
          const Cols c = visible_cols<BN>(p, q, qt1, kend, kt);
          if (read_mask)
            mask_row(p, s[mt], i, t4, c, b, h, q, kt);
          else
            limit_row(s[mt], i, t4, c);
        }
      }

#pragma unroll
      for (int i = 0; i < 2; ++i) softmax_row(s[mt], acc[mt], i, m[mt][i], l[mt][i]);
    }

    if constexpr (ST == 2) {
      cp_async_wait_group<1>();
      __syncthreads();  // V(it) landed; the other V buffer (tile it-1) is free
      if (next < t_end) load_v(sV0 + (buf ^ 1) * BN * LDS, kn);
      cp_async_commit();
    } else {
      cp_async_wait_all();
      __syncthreads();  // V(it) landed; every warp is done with K(it)
      if (next < t_end) load_k(sK, kn);
      cp_async_commit();
    }

    // O += P V, with P's accumulator layout reused as the A fragment.
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) {
      std::uint32_t a[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) pack_p<T>(s[mt], kk, a[mt]);
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        std::uint32_t vb[4];
        ldmatrix_x4_trans(vb, sV + (kk * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * LDS + dp * 16 +
                                  (lane >> 4) * 8);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma16816<T>(acc[mt][2 * dp], a[mt], vb[0], vb[1]);
          mma16816<T>(acc[mt][2 * dp + 1], a[mt], vb[2], vb[3]);
        }
      }
    }
  }

  // Epilogue: each thread writes its rows' columns.
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const i64 q = qt0 + warp * WR + mt * 16 + g + 8 * i;
      store_row<T>(p, out_mode, split, b, h, q, q < qt1, t4, i, m[mt][i], l[mt][i], acc[mt]);
    }
}

template <typename T, int D>
int prefill_blocks_per_sm() {
  allow_dynamic_smem<prefill_kernel<T, D>>(tc_smem_bytes(D),
                                           "cudaFuncSetAttribute(prefill_kernel)");
  int n = 0;
  check_cuda(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
                 &n, prefill_kernel<T, D>, tc_config(D).warps * 32, tc_smem_bytes(D)),
             "cudaOccupancyMaxActiveBlocksPerMultiprocessor(prefill_kernel)");
  return n;
}

template <typename T, int D>
void launch_prefill(const KernelParams& p, cudaStream_t stream) {
  constexpr TcConfig cfg = tc_config(D);
  constexpr int smem = tc_smem_bytes(D);
  auto kernel = prefill_kernel<T, D>;
  allow_dynamic_smem<prefill_kernel<T, D>>(tc_smem_bytes(D),
                                           "cudaFuncSetAttribute(prefill_kernel)");
  const dim3 grid(static_cast<unsigned>((p.q1 - p.q0 + cfg.block_m - 1) / cfg.block_m),
                  static_cast<unsigned>(p.B * p.Hq), static_cast<unsigned>(p.splits));
  kernel<<<grid, cfg.warps * 32, smem, stream>>>(p);
  check_cuda(cudaGetLastError(), "prefill_kernel launch");
}

}  // namespace longattn::cuda
