// Hopper prefill kernel (sm_90a): TMA + warpgroup MMA in FlashAttention-3's
// warp-specialized shape, with its intra-warpgroup overlap of softmax and
// P V (not its ping-pong scheduling between consumer warpgroups).
//
// One block = block_m query rows of one (b, h) against its split of the
// rectangle's key tiles; 1 + block_m / 64 warpgroups:
//   producer (warpgroup 0, one thread): Q once, then per key tile K(i) and
//     V(i) into `stages` ring buffers, each completing on a "full" mbarrier
//     and reused after the consumers arrive on its "empty" mbarrier;
//   consumers (warpgroups 1.., 64 rows each), per key tile:
//     S = Q K^T        wgmma, A and B from shared memory
//     softmax          the same row steps as the mma.sync kernel (tile_softmax.cuh)
//     O += P V         wgmma, P from registers, V from shared memory (transposed)
//   with softmax(i) overlapping P(i-1) V(i-1) where HopperConfig::overlap.
// The consumers run unsynchronized, so one's softmax overlaps another's
// matrix products. Registers move from the producer to the consumers
// (40 -> 232 with two consumers): O is 64 (D = 128) or 128 (D = 256)
// floats a thread.
//
// Shared memory tiles are rows of 64 16-bit elements (128 bytes), written
// by TMA with the 128-byte swizzle that wgmma descriptors read; a D-wide
// tile is D / 64 such column blocks, one after another.
#pragma once

#include <cuda_runtime.h>

#include <climits>
#include <type_traits>

#include "core/half.hpp"
#include "core/mask_blocks.hpp"
#include "cuda/check.hpp"
#include "cuda/device_common.cuh"
#include "cuda/sm90.cuh"
#include "cuda/smem_limit.hpp"
#include "cuda/tensor_map.hpp"
#include "cuda/tile_softmax.cuh"
#include "cuda/wgmma.cuh"
#include "longattn/tensor.hpp"

namespace longattn::cuda {

// Narrows the key tiles [it0, it1) of a block to those its mask blocks do
// not all hide, over the summary rows of heads [h0, h1) and queries
// [q0, q1) (every lane of a warp calls it; each reads every 32nd key
// block). The producer then walks only a banded or block-diagonal mask's
// band: one dependent read of the summary per tile, across a 64K-key row,
// took longer than the tiles it skipped.
template <int BN>
__device__ void shown_tiles(const KernelParams& p, i64 b, i64 h0, i64 h1, i64 q0, i64 q1, i64 kend,
                            i64& it0, i64& it1) {
  using core::kMaskBlock;
  if (it1 <= it0 || q1 <= q0) return;
  if (p.mb_stride[1] == 0) h1 = h0 + 1;  // one slice serves every head
  const i64 kb0 = (p.k0 + it0 * BN) / kMaskBlock;
  const i64 kb1 = (min(p.k0 + it1 * BN, kend) - 1) / kMaskBlock;  // inclusive
  constexpr auto kHid = static_cast<std::uint8_t>(core::BlockKind::hidden);
  int lo = INT_MAX, hi = -1;
  for (i64 hh = h0; hh < h1; ++hh)
    for (i64 qb = q0 / kMaskBlock; qb <= (q1 - 1) / kMaskBlock; ++qb) {
      const std::uint8_t* row =
          p.mask_blocks + b * p.mb_stride[0] + hh * p.mb_stride[1] + qb * p.mb_stride[2];
      for (i64 kb = kb0 + threadIdx.x % 32; kb <= kb1; kb += 32)
        if (row[kb] != kHid) {
          lo = min(lo, static_cast<int>(kb));
          hi = max(hi, static_cast<int>(kb));
        }
    }
  lo = __reduce_min_sync(0xffffffffu, lo);
  hi = __reduce_max_sync(0xffffffffu, hi);
  if (hi < 0) {  // every block hidden
    it1 = it0;
    return;
  }
  // Tiles that overlap key blocks [lo, hi] (a negative numerator truncates
  // to 0, under it0 anyway).
  it0 = max(it0, (lo * kMaskBlock - p.k0) / BN);
  it1 = min(it1, ((hi + 1) * kMaskBlock - p.k0 + BN - 1) / BN);
}

// kPacked: rows are (GQA head, query) pairs of one KV head (decode; see
// hopper_decode_config), else 64 x consumers queries of one head.
// kMask, kCap: the instantiations for array masks and the soft-cap (the
// extras; both in one for decode, kPacked), so that calls without them run
// no code of theirs, and neither pays for the other's: a kernel holding
// both paths of the soft-cap's test paid register moves between them on
// every tile. Both keep the softmax / P V overlap where the width has it
// (D 128, 256), except the two together, which would spill (ptxas: 72 bytes
// at D = 128, 164 at 256) and run tile by tile. (The mask's code once
// spilled 1188 bytes with the overlap; since its decode was slimmed it takes
// 16 at D = 128 and 16 at 256 (ptxas, with the TMA copy), and the overlap
// took the bool mask from 0.79 to 0.81 of unmasked, the bias from 0.56 to
// 0.58, on an H200 at 16K.)
template <typename T, int D, bool kPacked, bool kMask, bool kCap>
constexpr HopperConfig hopper_cfg = [] {
  HopperConfig c = kPacked ? hopper_decode_config(D) : hopper_config(D);
  c.overlap = c.overlap && !(kMask && kCap);  // see above
  // Three consumers have 160 registers each, too few for the soft-cap's
  // overlapped loop (ptxas, D = 64: 2.4 KB of spills); two have 224. The
  // mask's tile-by-tile loop keeps three at D = 64 (spills, ptxas, one
  // instantiation per mask type: 56-88 bytes, 172 for a float32 mask) and
  // ran faster than with two (measured with every type in one kernel,
  // H200, 64K d64, bf16: a dense bool mask 110.5 -> 98.4 ms, causal as a
  // mask 60.1 -> 53.6 ms, an additive bias 178.3 -> 157.0 ms).
  if (kCap && c.block_m == 192) c.block_m = 128;
  return c;
}();

// Whether an instantiation may add finite bias tiles by tensor-core product
// (KernelParams::bias_mma): the unpacked masked kernels that fold the scale
// and run tile by tile (D = 64), where the mask's per-score convert and FMA
// weighed most: the exponent unit and the issue slots bound that loop, the
// tensor cores had room. The overlapped loops start a tile's mask copy just
// before its product, so the product would wait for it there.
// Only the instantiation for an additive mask of the inputs' dtype T (the
// product's A operand is the staged mask).
template <typename T, bool kPacked, MaskInst kMI, bool kCap>
constexpr bool hopper_bias_mma(HopperConfig c) {
  constexpr MaskInst kSame = std::is_same_v<T, __half> ? MaskInst::f16 : MaskInst::bf16;
  return kMI == kSame && !kPacked && !kCap && !c.overlap;
}

// The bias product: keys [16 j, 16 j + 16) of the staged 16-bit rows at sa
// (64 x 16, the A operand) times the 16 x 16 diagonal at sb, written to
// those columns of the scores, for every j of the tile (issued, not waited
// for).
template <typename MT, int NS, int J = 0>
__device__ __forceinline__ void issue_bias(float (&sc)[NS][4], std::uint32_t sa, std::uint32_t sb) {
  if constexpr (J < NS) {
    // Keys 8 J.. are bytes 16 J.. of a row: column block 16 J / 128, then
    // 32-byte steps along its 128-byte rows (as issue_s steps along Q's).
    const std::uint32_t a = sa + (16 * J / 128) * 64 * 128 + (16 * J) % 128;
    wgmma_ss16<MT, J>(sc, sm90::desc_sw128(a, 16, 1024), sm90::desc_sw128(sb, 16, 1024));
    issue_bias<MT, NS, J + 2>(sc, sa, sb);
  }
}

// kMI: the instantiation's mask (MaskInst); the unpacked masked kernels
// without the soft-cap have one instantiation per element type.
template <typename T, int D, bool kPacked, MaskInst kMI, bool kCap>
__global__ void __launch_bounds__(
    hopper_threads(hopper_cfg<T, D, kPacked, kMI != MaskInst::none, kCap>), 1)
    hopper_kernel(const __grid_constant__ KernelParams p, const __grid_constant__ CUtensorMap tq,
                  const __grid_constant__ CUtensorMap tk, const __grid_constant__ CUtensorMap tv,
                  const __grid_constant__ CUtensorMap tm) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr bool kMask = kMI != MaskInst::none;
  constexpr HopperConfig cfg = hopper_cfg<T, D, kPacked, kMask, kCap>;
  constexpr int BM = cfg.block_m, BN = cfg.block_n, ST = cfg.stages;
  constexpr int CB = D / 64;  // 128-byte column blocks
  constexpr int NS = BN / 8, NO = D / 8;
  constexpr std::uint32_t kQBytes = BM * D * 2, kKVBytes = BN * D * 2;
  constexpr int CW = hopper_consumers(cfg);
  static_assert(BM == 64 * CW && CW >= 1 && CW <= 3 && D % 64 == 0 && BN % 16 == 0);
  // Registers a thread: the producer gives up what the consumers take. The
  // block starts with the launch's share (65536 / threads, in steps of 8:
  // 168 with two consumers, 128 with three), and setmaxnreg.inc waits until
  // the pool holds what it asks for, so the split must not exceed that
  // share: 128 x 40 + 256 x 232, or 128 x 24 + 384 x 160 (with one
  // consumer, 256 threads, nothing needs moving). kMask: the producer
  // also reads the mask's block summary and the consumers run tile by
  // tile: 128 x 56 + 256 x 224, or 128 x 32 + 384 x 160 (the whole pool;
  // with 24 the producer's summary reads spilled 40 bytes, ptxas); the
  // spills of the masked consumers are counted above, at hopper_cfg.
  constexpr int kProducerRegs = CW == 2 ? (kMask ? 56 : 40) : kMask ? 32 : 24;
  constexpr int kConsumerRegs = CW == 2 ? (kMask ? 224 : 232) : 160;
  constexpr bool kBias = hopper_bias_mma<T, kPacked, kMI, kCap>(cfg);
  constexpr int kLaunchRegs = 65536 / (128 * (1 + CW)) / 8 * 8;
  static_assert(CW == 1 || kProducerRegs + CW * kConsumerRegs <= (1 + CW) * kLaunchRegs,
                "setmaxnreg would wait for registers the block does not have");

  extern __shared__ uint4 hopper_smem[];
  const std::uint32_t sQ = (smem_addr(hopper_smem) + 1023u) & ~1023u;
  const std::uint32_t sK = sQ + kQBytes, sV = sK + ST * kKVBytes;
  // Each consumer's copy of its rows of the current tile's mask (1024-byte
  // aligned, as TMA's 128-byte swizzle needs).
  const std::uint32_t sM = sV + ST * kKVBytes;
  const std::uint32_t bars = sM + CW * hopper_mask_stage_bytes(BN);
  const std::uint32_t q_full = bars;
  auto k_full = [&](int s) { return bars + 8u * (1 + s); };
  auto v_full = [&](int s) { return bars + 8u * (1 + ST + s); };
  auto k_empty = [&](int s) { return bars + 8u * (1 + 2 * ST + s); };
  auto v_empty = [&](int s) { return bars + 8u * (1 + 3 * ST + s); };
  // Generic pointer to shared address `a` (for plain loads and stores).
  auto generic = [&](std::uint32_t a) {
    return reinterpret_cast<char*>(hopper_smem) + (a - smem_addr(hopper_smem));
  };
  // Per ring slot, the key tile it holds (-1: no more) and the mask's block
  // kinds over each consumer's rows (8 bits each, core::block_kinds, and
  // kTailNotFinite), written by the producer before the slot's K load, read
  // after it has landed.
  struct TileMeta {
    std::int32_t it;
    std::uint32_t kinds;
  };
  static_assert(8 * (1 + 4 * ST) <= 144 && 144 + 8 * ST <= 256);
  // Set beside a consumer's kinds where the tile's keys past the
  // rectangle's end (up to Lk) hold other than open or finite blocks: the
  // bias product reads them too, and a -inf there times a zero weight
  // would be NaN in its neighbours' columns.
  constexpr std::uint32_t kTailNotFinite = 1u << 4;
  constexpr std::uint32_t kOpen = 1u << static_cast<unsigned>(core::BlockKind::open);
  constexpr std::uint32_t kHidden = 1u << static_cast<unsigned>(core::BlockKind::hidden);
  constexpr std::uint32_t kFinite = 1u << static_cast<unsigned>(core::BlockKind::finite);
  TileMeta* const meta = reinterpret_cast<TileMeta*>(generic(bars + 144));
  // Per consumer warp, the barrier its TMA mask copies complete on.
  auto mask_full = [&](int w) { return bars + 256u + 8u * w; };
  static_assert(256 + 8 * 4 * CW <= 384 && 384 + 4 * 32 <= kHopperBarrierBytes);

  // Packed: 64 / group queries of each of the group's heads; rows are
  // head-major (row r = head (r / QT), query (r % QT)), as the Q box lands.
  const int QT = kPacked ? BM / static_cast<int>(p.group) : BM;
  const TileRange tr = kPacked ? packed_tile_range<BN>(p, QT)
                       : kMask ? tile_range_heads_inner<BM, BN>(p)
                               : tile_range<BM, BN>(p);
  const i64 b = tr.b, h = tr.h, hkv = tr.hkv, qt0 = tr.qt0, qt1 = tr.qt1, kend = tr.kend;
  const i64 t_beg = tr.t_beg, t_end = tr.t_end;
  const int split = tr.split;
  const bool masked = kMask && p.mask_kind != core::MaskKind::none;

  // Ring slot and mbarrier phase parity of the n-th key tile the block runs.
  struct Stage {
    int s;
    std::uint32_t ph;
  };
  auto stage_of = [&](int n) { return Stage{n % ST, static_cast<std::uint32_t>((n / ST) & 1)}; };

  if (threadIdx.x == 0) {
    sm90::mbar_init(q_full, 1);
    for (int s = 0; s < ST; ++s) {
      sm90::mbar_init(k_full(s), 1);
      sm90::mbar_init(v_full(s), 1);
      // Lane 0 of each consumer warp arrives once it is done.
      sm90::mbar_init(k_empty(s), 4 * CW);
      sm90::mbar_init(v_empty(s), 4 * CW);
    }
    if (kMask)
      for (int w = 0; w < 4 * CW; ++w) sm90::mbar_init(mask_full(w), 1);
    sm90::fence_barrier_init();
  }
  // The bias product's B operand, each consumer's own: 16 x 16, the
  // diagonal fold_mask_mul in the mask's dtype, zeros elsewhere, laid out
  // as a K tile (rows of 128 bytes, the 128-byte swizzle; 32 bytes of each
  // row used), in the half of the consumer's mask copy that a 16-bit mask
  // leaves free. One 16-byte chunk a thread of the consumer's first warp.
  if (kBias && p.bias_mma && threadIdx.x >= 128 && threadIdx.x % 128 < 32) {
    const int r = threadIdx.x % 32 / 2, half = threadIdx.x % 2;
    std::uint32_t w[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int k = 8 * half + 2 * i;  // the word's two keys: k, k + 1
      w[i] = (k == r ? p.bias_diag : 0u) | (k + 1 == r ? p.bias_diag << 16 : 0u);
    }
    const std::uint32_t at = sM + (threadIdx.x / 128 - 1) * hopper_mask_stage_bytes(BN) +
                             bias_diag_offset(BN) + r * 128 + ((half ^ (r % 8)) << 4);
    *reinterpret_cast<uint4*>(generic(at)) = make_uint4(w[0], w[1], w[2], w[3]);
    sm90::fence_proxy_async();  // for the wgmma that reads it, after the barrier below
  }
  // Decode: the split-K merge may launch once every block of this grid has
  // started (so its early blocks take no slot this grid still needs) and
  // waits on the device for this grid to finish.
  if constexpr (kPacked) allow_dependents();
  __syncthreads();

  // The warpgroup (and below, the warp's row base) through a shuffle, so
  // that the compiler knows them warp-uniform (as CUTLASS does): in the
  // masked kernels it then keeps the tile loop's descriptors and branches
  // on the uniform datapath. A profile of the masked D 64 kernel on an
  // all-true mask (ncu, H200, 64K) had found ~120 more instructions a warp
  // a tile than the unmasked one, 33 of them R2UR moves of descriptors
  // computed per thread. Same run, 64K d64 bf16: bias 116.6 -> 110.5 ms
  // (and with the rescale skip, 108.1), an all-true mask 95.7 -> 93.8.
  // Only there (kUniformIdx): in the kernels of two consumers it took the
  // masked ones' spills from 16-28 bytes to 224-284 (ptxas, D 128 and 256)
  // and the 16K d128 bias from 10.19 to 10.66 ms.
  constexpr bool kUniformIdx = kMask && CW == 3;
  const int wg = kUniformIdx ? __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x) / 128, 0)
                             : threadIdx.x / 128;
  if (wg == 0) {
    if constexpr (CW > 1) sm90::reg_dealloc<kProducerRegs>();
    if (threadIdx.x >= 32) return;
    i64 it_beg = t_beg, it_end = t_end;  // narrowed to the tiles the mask shows
    if (kMask && p.mask_blocks != nullptr)
      shown_tiles<BN>(p, b, h, h + (kPacked ? p.group : 1), qt0, qt1, kend, it_beg, it_end);
    if (!kMask && threadIdx.x != 0) return;
    // The mask's block kinds of key tile `it` over each consumer's rows; 0
    // (nothing to skip or leave unread) without a mask summary.
    auto tile_kinds = [&](i64 it) {
      if (!kMask || p.mask_blocks == nullptr) return 0u;
      const i64 kt = p.k0 + it * BN, ke = min(kt + BN, kend);
      if constexpr (kPacked)  // one consumer: every head of the group
        return core::block_kinds(p, b, h, h + p.group, qt0, qt1, kt, ke);
      std::uint32_t kinds = 0;
#pragma unroll
      for (int c = 0; c < CW; ++c) {
        const i64 r0 = qt0 + 64 * c;
        kinds |= core::block_kinds(p, b, h, h + 1, r0, min(r0 + 64, qt1), kt, ke) << (8 * c);
      }
      return kinds;
    };
    // Tiles the mask hides from every row of the block (no kind but
    // `hidden` anywhere) are neither loaded nor computed.
    constexpr std::uint32_t kHiddenOnly = 0x01010101u & ((1ull << (8 * CW)) - 1);
    auto hidden = [&](std::uint32_t kinds) {
      return kinds != 0 && (kinds | kHiddenOnly) == kHiddenOnly;
    };
    // kTailNotFinite of each consumer for the last tile, the one tile whose
    // keys may run past the rectangle's end (computed once, out of the loop,
    // where the producer's few registers are spent).
    std::uint32_t tail = 0;
    if (kBias && p.bias_mma && it_end > it_beg) {
      const i64 kt = p.k0 + (it_end - 1) * BN, ke = min(kt + BN, kend), kx = min(kt + BN, p.Lk);
      for (int c = 0; c < CW && kx > ke; ++c) {
        const i64 r0 = qt0 + 64 * c, r1 = min(r0 + 64, qt1);
        if ((core::block_kinds(p, b, h, h + 1, r0, r1, ke, kx) & ~(kOpen | kFinite)) != 0)
          tail |= kTailNotFinite << (8 * c);
      }
    }
    const int ib = static_cast<int>(b), ih = static_cast<int>(h), ikv = static_cast<int>(hkv);
    int n = 0;
    // Loads tile `it` of `kinds` into the next ring slot (one thread).
    auto send = [&](i64 it, std::uint32_t kinds) {
      if (hidden(kinds)) return;
      if (it == it_end - 1) kinds |= tail;
      if (n == 0) {
        sm90::mbar_arrive_expect_tx(q_full, kQBytes);
        // Packed: the box is QT queries x group heads from head h, the
        // group's first (tensor_map.hpp).
#pragma unroll
        for (int cb = 0; cb < CB; ++cb)
          sm90::tma_load_4d(sQ + cb * BM * 128, &tq, q_full, cb * 64, static_cast<int>(qt0), ih,
                            ib);
      }
      const auto [s, ph] = stage_of(n++);
      const int kt = static_cast<int>(p.k0 + it * BN);
      // A fresh barrier counts as having completed the phase before its
      // first, so the first pass over the ring does not wait.
      sm90::mbar_wait(k_empty(s), ph ^ 1);
      meta[s] = TileMeta{static_cast<std::int32_t>(it), kinds};
      sm90::mbar_arrive_expect_tx(k_full(s), kKVBytes);
#pragma unroll
      for (int cb = 0; cb < CB; ++cb)
        sm90::tma_load_4d(sK + s * kKVBytes + cb * BN * 128, &tk, k_full(s), cb * 64, kt, ikv, ib);
      sm90::mbar_wait(v_empty(s), ph ^ 1);
      sm90::mbar_arrive_expect_tx(v_full(s), kKVBytes);
#pragma unroll
      for (int cb = 0; cb < CB; ++cb)
        sm90::tma_load_4d(sV + s * kKVBytes + cb * BN * 128, &tv, v_full(s), cb * 64, kt, ikv, ib);
    };
    if constexpr (kMask) {
      // The warp reads the summary of 32 tiles at once, a tile a lane, into
      // shared memory, and lane 0 sends them, rather than one thread making
      // the two to six dependent L2 reads of every tile on the way. (No
      // change measured: H200, 64K d64, an all-true mask 96.5 -> 95.8 ms,
      // within the spread of runs; the masked kernel's gap to the unmasked
      // one was in its consumers' instructions, see wg above. Without it
      // the per-type kernels spill more, ptxas: bf16 64 -> 200 bytes,
      // bool 68 -> 220.)
      std::uint32_t* const batch = reinterpret_cast<std::uint32_t*>(generic(bars + 384));
      for (i64 it0 = it_beg; it0 < it_end; it0 += 32) {
        const int count = static_cast<int>(min(i64{32}, it_end - it0));
        if (static_cast<int>(threadIdx.x) < count)
          batch[threadIdx.x] = tile_kinds(it0 + threadIdx.x);
        __syncwarp();
        if (threadIdx.x == 0)
          for (int j = 0; j < count; ++j) send(it0 + j, batch[j]);
        __syncwarp();
      }
      if (threadIdx.x != 0) return;
    } else {
      for (i64 it = it_beg; it < it_end; ++it) send(it, 0u);
    }
    // The end: one more slot that says so, completed by a plain arrive
    // (the mbarrier's release makes the meta visible to the waiters).
    const auto [s, ph] = stage_of(n);
    sm90::mbar_wait(k_empty(s), ph ^ 1);
    meta[s] = TileMeta{-1, 0u};
    sm90::mbar_arrive(k_full(s));
    return;
  }

  if constexpr (CW > 1) sm90::reg_alloc<kConsumerRegs>();
  const int cw = wg - 1;  // consumer warpgroup: rows [64 cw, 64 cw + 64) of the tile
  const int ctid = threadIdx.x % 128, lane = threadIdx.x % 32;
  const int g = lane >> 2, t4 = lane & 3;
  const InMode in_mode = p.splits > 1 ? InMode::empty : p.in_mode;
  const OutMode out_mode = p.splits > 1 ? OutMode::partial : p.out_mode;
  // Head and query of the consumer's local row r in [0, 64).
  auto row_head = [&](int r) { return kPacked ? h + (cw * 64 + r) / QT : h; };
  auto row_query = [&](int r) { return kPacked ? qt0 + (cw * 64 + r) % QT : qt0 + cw * 64 + r; };
  const int lr[2] = {(ctid / 32) * 16 + g, (ctid / 32) * 16 + g + 8};  // the thread's two rows
  i64 q[2], hr[2];
  float m[2], l[2];
  float acc[NO][4];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    q[i] = row_query(lr[i]);
    hr[i] = row_head(lr[i]);
    init_row(p, in_mode, b, hr[i], q[i], q[i] < qt1, t4, i, m[i], l[i], acc);
  }

  // The consumer's rows of a partial tile's mask, staged in shared memory
  // (device_common.cuh's staged layout: swizzled so that the eight rows a
  // warp reads at once fall in distinct banks) and read from there. Each
  // warp copies the 16 rows it reads (wrow on) and waits only for its own
  // copy (its mbarrier or __syncwarp), not for the consumer's other warps.
  // The copy starts before the previous tile's P V (start_mask), by TMA
  // where the launcher could describe the mask to it (p.mask_tma: unpacked
  // rows, 16-byte aligned strides, rows that do not broadcast): one lane
  // asks for the warp's rows as swizzled boxes of min(row_bytes, 128) bytes
  // a row (one to four). (Reading a
  // mask cost ~400 instructions a consumer warp a tile, ncu, 16K d128; in
  // the machine code each 16-byte cp.async came with some 20 of predicates
  // and 64-bit addresses. By TMA: bias 12.2 -> 11.2 ms, H200.) Else with
  // cp.async, 16 bytes at a time, where rows are
  // 16-byte aligned (p.stage_mask), else element by element; those copies
  // read zeros for rows past the rectangle and keys past Lk, TMA zeros past
  // the mask's Lq and Lk only: rows past the rectangle are never stored.
  const std::uint32_t sMw = sM + cw * hopper_mask_stage_bytes(BN);
  const char* const mrows = generic(sMw);
  // Element offset of the mask's (row r, key j).
  auto mask_off = [&](int r, i64 j) {
    return b * p.mask_stride[0] + row_head(r) * p.mask_stride[1] + row_query(r) * p.mask_stride[2] +
           j * p.mask_stride[3];
  };
  const int copy_rows = static_cast<int>(min(i64{64}, max(i64{0}, qt1 - qt0 - cw * 64)));
  const int wrow = kUniformIdx ? __shfl_sync(0xffffffffu, (ctid / 32) * 16, 0) : (ctid / 32) * 16;
  const bool tma_copy = masked && !kPacked && p.mask_tma;
  // (The same warp index either way; spelled from the shuffled wrow only
  // where that is shuffled, as the spill counts above were taken.)
  const std::uint32_t mbar = mask_full(cw * 4 + (kUniformIdx ? wrow / 16 : ctid / 32));
  std::uint32_t mphase = 0;  // parity of the warp's next TMA mask copy
  // The unpacked kernel's rows are consecutive queries of one head: without
  // TMA, each lane copies one column chunk of every (32 / chunks)-th row,
  // its source a constant stride further each row (with a run-time chunk
  // count, its divisions and loop took a quarter of the consumers' issue
  // slots on a bias; ncu, 16K d128).
  const bool strided_copy = masked && p.stage_mask && !kPacked;
  auto stage_mask = [&](i64 kt) {
    // Every lane is done with the last tile's copy (its values consumed),
    // so the next copy may overwrite it: for TMA, this read-then-release is
    // what CUTLASS's TMA pipelines do too (no proxy fence before the write).
    __syncwarp();
    with_mask_elem<kMI>(p, [&](auto elem) {
      constexpr int kEs = mask_elem_size<decltype(elem)::value>, kRow = BN * kEs;
      constexpr int kChunks = kRow / 16, kBox = staged_box_bytes(kRow);
      // Byte offset of (row r, byte c of its keys) in the copy.
      auto at = [&](int r, int c) {
        return staged_row_off(r, kRow) + staged_col_off(c, staged_row_key(r, kRow), kRow);
      };
      if (tma_copy) {
        if (lane == 0) {
          sm90::mbar_arrive_expect_tx(mbar, 16 * kRow);
          const int mb = p.mask_stride[0] == 0 ? 0 : static_cast<int>(b);
          const int mh = p.mask_stride[1] == 0 ? 0 : static_cast<int>(h);
#pragma unroll
          for (int x = 0; x < kRow / kBox; ++x)
            sm90::tma_load_4d(sMw + staged_row_off(wrow, kRow) + staged_col_off(x * kBox, 0, kRow),
                              &tm, mbar, static_cast<int>(kt) + x * kBox / kEs,
                              static_cast<int>(row_query(wrow)), mh, mb);
        }
        return;
      }
      if (strided_copy) {
        constexpr int kStep = 32 / kChunks;
        static_assert(32 % kChunks == 0 && 16 % kStep == 0);
        const int ch = lane % kChunks, r0 = wrow + lane / kChunks;
        const i64 col = kt + ch * 16 / kEs;
        const int valid = col < p.Lk ? static_cast<int>(min(i64{16}, (p.Lk - col) * kEs)) : 0;
        const char* src = static_cast<const char*>(p.mask) + mask_off(r0, col) * kEs;
        const i64 stride = p.mask_stride[2] * kEs * kStep;
#pragma unroll
        for (int k = 0; k < 16 / kStep; ++k, src += stride) {
          const int r = r0 + k * kStep, v = r < copy_rows ? valid : 0;
          cp_async16(sMw + at(r, ch * 16), v > 0 ? src : static_cast<const char*>(p.mask), v);
        }
        cp_async_commit();
        return;
      }
      if (p.stage_mask) {
        for (int c = lane; c < 16 * kChunks; c += 32) {
          const int r = wrow + c / kChunks, ch = c % kChunks;
          const i64 col = kt + ch * 16 / kEs;
          const int valid = row_query(r) < qt1 && col < p.Lk
                                ? static_cast<int>(min(i64{16}, (p.Lk - col) * kEs))
                                : 0;
          cp_async16(sMw + at(r, ch * 16),
                     static_cast<const char*>(p.mask) + (valid > 0 ? mask_off(r, col) * kEs : 0),
                     valid);
        }
        cp_async_commit();
        return;
      }
      using Word = std::conditional_t<kEs == 1, std::uint8_t,
                                      std::conditional_t<kEs == 2, std::uint16_t, std::uint32_t>>;
      for (int e = lane; e < 16 * BN; e += 32) {
        const int r = wrow + e / BN, c = e % BN;
        const i64 j = kt + c;
        const bool in = row_query(r) < qt1 && j < p.Lk;
        const auto* src = reinterpret_cast<const Word*>(static_cast<const char*>(p.mask) +
                                                        (in ? mask_off(r, j) * kEs : 0));
        *reinterpret_cast<Word*>(generic(sMw) + at(r, c * kEs)) = in ? *src : Word{0};
      }
    });
  };
  // Whether this consumer reads the mask of a tile of `kinds` (its byte):
  // not where its blocks are all open or all hidden.
  auto my_kinds = [&](std::uint32_t kinds) {
    return p.mask_blocks == nullptr ? core::kEveryBlockKind : (kinds >> (8 * cw)) & 0xffu;
  };
  // (The overlapped loop has no per-consumer skip: a tile hidden from this
  // consumer's rows is read like a partial one, its -inf / false applied.)
  auto reads_mask = [&](std::uint32_t mine) {
    return masked && mine != kOpen && (cfg.overlap || mine != kHidden);
  };
  // Whether this consumer adds the tile's bias by tensor-core product: its
  // blocks are finite or open, some finite, and so are the keys past the
  // rectangle's end that the product reads (kTailNotFinite).
  auto bias_by_mma = [&](std::uint32_t mine) {
    return kBias && p.bias_mma && (mine & kFinite) != 0 && (mine & ~(kOpen | kFinite)) == 0;
  };

  const std::uint32_t sQw = sQ + cw * 64 * 128;
  // S = Q K^T for the K tile in stage s (issued, not waited for), added to
  // S where `acc` (else written).
  auto issue_s = [&](float(&sc)[NS][4], int s, bool acc = false) {
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks) {
      const std::uint32_t off = (ks % 4) * 32u;  // 16 elements along the 128-byte row
      const std::uint64_t da = sm90::desc_sw128(sQw + (ks / 4) * BM * 128 + off, 16, 1024);
      const std::uint64_t db =
          sm90::desc_sw128(sK + s * kKVBytes + (ks / 4) * BN * 128 + off, 16, 1024);
      wgmma_ss<T, BN>(sc, da, db, acc || ks > 0);
    }
    sm90::wgmma_commit();
  };
  // The staged bias times the diagonal written to S, then Q K^T added to
  // it (issued, not waited for). The bias first: added after Q K^T, its
  // products on parts of S's registers made ptxas serialize every wgmma of
  // the kernel ("insufficient register resources").
  auto issue_s_bias = [&](float(&sc)[NS][4], int s) {
    if constexpr (kBias) {
      // The copy's address through a move the compiler cannot see through,
      // so that it forms the eight A descriptors here, each tile, rather
      // than holding them across the loop.
      std::uint32_t sa;
      asm volatile("mov.b32 %0, %1;\n" : "=r"(sa) : "r"(sMw));
      issue_bias<T>(sc, sa, sa + bias_diag_offset(BN));
      issue_s(sc, s, true);
    }
  };
  // O += P V for the V tile in stage s (issued, not waited for).
  auto issue_pv = [&](std::uint32_t(&pa)[BN / 16][4], int s) {
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) {
      // V is [keys][D] with D contiguous: the MN-major B operand. 16 keys
      // per step (two 8-row groups, 1024 bytes apart); column blocks of 64
      // are BN rows (BN * 128 bytes) apart.
      const std::uint64_t db = sm90::desc_sw128(sV + s * kKVBytes + kk * 16 * 128, BN * 128, 1024);
      wgmma_rs<T, D>(acc, pa[kk], db);
    }
    sm90::wgmma_commit();
  };
  // Base-2 logits: scaled (and capped), then the staged array mask where
  // this consumer's blocks of the tile are partial, and a per-row column
  // range on tiles that cross the causal diagonal, an edge of the window or
  // the rectangle's key end. Then P = 2^(S - m'); returns each row's alpha.
  // (Tiles hidden from all the consumer's rows never get here.)
  // Without the soft-cap's instantiation the scale is folded into the
  // exponent's FMA (softmax_row_p) instead of a multiply a score: the tile
  // holds logits / scale_log2, so mask terms are added as v p.fold_mask_mul
  // (log2(e) / scale_log2; a term past FLT_MAX * scale overflows, where
  // scaled first it did past FLT_MAX / log2(e): attention.hpp). The column
  // range and hidden rows are -inf either way. A compile-time choice: a
  // run-time one cost the masked consumers some 200 bytes of spills
  // (ptxas, D = 128). In the masked kernel with three consumers (D = 64,
  // 160 registers each) it took the spills from 100 to 164 bytes stored
  // (ptxas) and still won (H200, 64K d64 bf16, same run: bias 129.2 ->
  // 123.2 ms, bool mask 101.2 -> 95.2, causal as a mask 55.0 -> 51.4).
  constexpr bool kFold = !kCap;
  const float tile_scale = kFold ? p.scale_log2 : 1.f;
  const float mask_mul = kFold ? p.fold_mask_mul : core::kLog2e;
  auto softmax = [&](float(&sc)[NS][4], int it, std::uint32_t mine, float(&alpha)[2],
                     bool bias_added) {
    if constexpr (!kFold) scale_tile<kCap>(p, sc);
    if (reads_mask(mine) && !bias_added) {
      if (tma_copy) {
        sm90::mbar_wait(mbar, mphase);
        mphase ^= 1;
      } else {
        cp_async_wait_all();
        __syncwarp();  // every lane's copies have landed
      }
      with_mask_elem<kMI>(p, [&](auto elem) {
        constexpr MaskElem E = decltype(elem)::value;
        constexpr int kRow = BN * mask_elem_size<E>;
        if constexpr (mask_elem_size<E> == 2) {
          // Lane l addresses row 8 ((l / 8) % 2) + l % 8 of its warp's 16
          // for chunk l / 16 of each pair.
          const int r = wrow + 8 * ((lane / 8) % 2) + lane % 8;
          mask_tile_ldsm<E>(sc, mrows + staged_row_off(r, kRow), lane / 16, staged_row_key(r, kRow),
                            mask_mul);
        } else {
#pragma unroll
          for (int i = 0; i < 2; ++i)
            mask_row_staged<E>(sc, i, t4, mrows + staged_row_off(lr[i], kRow),
                               staged_row_key(lr[i], kRow), mask_mul);
        }
      });
    }
    // A separate pass, not a variant of each mask type's: every path that
    // leaves its own registers in sc costs the consumers registers.
    if (tile_crosses_edge(tr, it)) {
      const i64 kt = p.k0 + i64{it} * BN;
#pragma unroll
      for (int i = 0; i < 2; ++i) limit_row(sc, i, t4, visible_cols<BN>(p, q[i], qt1, kend, kt));
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) alpha[i] = softmax_row_p(sc, i, m[i], l[i], tile_scale);
  };
  // Software pipeline within the warpgroup (FlashAttention-3's intra-
  // warpgroup overlap): per tile i, S(i) = Q K(i)^T and O += P(i-1) V(i-1)
  // are issued together; softmax(i) starts as soon as S(i) is back, while
  // P(i-1) V(i-1) still runs on the tensor cores; only the rescale of O
  // waits for that product (cfg.overlap; otherwise tile by tile). Registers
  // an issued wgmma still reads or writes (sc, acc, pa) are pinned with
  // fence_operands until its wait.
  float sc[NS][4];
#pragma unroll
  for (int nt = 0; nt < NS; ++nt) sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.f;
  std::uint32_t pa[BN / 16][4];
  float alpha[2];
  // The n-th tile the producer sent (meta.it < 0: none left), once its K
  // has landed.
  auto next_tile = [&](int n) {
    const Stage k = stage_of(n);
    sm90::mbar_wait(k_full(k.s), k.ph);
    return meta[k.s];
  };
  // Once S of tile t (slot s) has completed: the K buffer goes back, then
  // the softmax (P in sc, alpha per row).
  auto s_done = [&](const TileMeta& t, int s, bool bias_added = false) {
    sm90::fence_operands(sc);
    if (lane == 0) sm90::mbar_arrive(k_empty(s));
    softmax(sc, t.it, my_kinds(t.kinds), alpha, bias_added);
  };
  // Once a P V product has completed: its V buffer (slot s) goes back.
  auto pv_done = [&](int s) {
    sm90::fence_operands(acc);
    sm90::fence_operands(pa);
    if (lane == 0) sm90::mbar_arrive(v_empty(s));
  };
  // The mask copy of tile t where this consumer reads its mask (its
  // softmax waits for it).
  auto start_mask = [&](const TileMeta& t) {
    if (t.it >= 0 && reads_mask(my_kinds(t.kinds))) stage_mask(p.k0 + t.it * BN);
  };
  // S of tile t (the n-th, its K landed) to completion, then its softmax.
  // A finite bias (bias_by_mma) joins S on the tensor cores: each warp
  // waits for its own TMA copy first. (Each warp's 16 rows of the product
  // read only that warp's 16 rows of the copy; and were the four warps'
  // parts run as one product, it could not start before all four warps
  // had issued it, each past its own wait.) Then S holds logits /
  // scale_log2 + v fold_mask_mul, the value the FMA formed
  // (fold_mask_mul is exact in the mask's dtype, the inputs': the
  // launcher), and the softmax adds nothing more. Dropping the per-score convert and FMA
  // from the softmax: H200, 64K d64, bf16 bias, see docs/BENCHMARKS.md.
  // (Two whole paths, each its own wgmma sequence: a branch between the
  // products made ptxas serialize them and spill.)
  auto s_step = [&](const TileMeta& t, int n) {
    const Stage k = stage_of(n);
    // (tma_copy is implied by p.bias_mma, launcher; without the test here
    // ptxas spilled 152 bytes instead of 56, bf16 mask.)
    const bool bias = kBias && tma_copy && bias_by_mma(my_kinds(t.kinds));
    if constexpr (kBias) {
      if (bias) {
        sm90::mbar_wait(mbar, mphase);
        mphase ^= 1;
        sm90::fence_operands(sc);
        sm90::wgmma_fence();
        issue_s_bias(sc, k.s);
        sm90::wgmma_wait<0>();
      }
    }
    if (!bias) {
      sm90::fence_operands(sc);
      sm90::wgmma_fence();
      issue_s(sc, k.s);
      sm90::wgmma_wait<0>();
    }
    s_done(t, k.s, bias);
  };
  // O += P V of the n-th tile, to completion.
  auto pv_step = [&](int n) {
    const Stage v = stage_of(n);
    sm90::mbar_wait(v_full(v.s), v.ph);
    sm90::fence_operands(acc);
    sm90::wgmma_fence();
    issue_pv(pa, v.s);
    sm90::wgmma_wait<0>();
    pv_done(v.s);
  };
  // O rescaled for the new row maxima; P packed as the next A operand.
  // Once a row's max has settled, most tiles leave every row of a warp
  // with alpha = 1: the warp then skips the multiply (one an output
  // element a tile, as many as the scores at D = 128). In the masked D 64
  // kernel it once ran slower (more spills); with the uniform warp indices
  // (wg, wrow) it gains there too (H200, 64K d64 bf16, same run: bias
  // 114.7 -> 108.1 ms, an all-true mask 94.4 -> 92.1).
  auto finish_p = [&] {
    if (__any_sync(0xffffffffu, alpha[0] != 1.f || alpha[1] != 1.f)) {
#pragma unroll
      for (int i = 0; i < 2; ++i) rescale_row(acc, i, alpha[i]);
    }
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) pack_p<T>(sc, kk, pa[kk]);
  };

  int n = 0;  // tiles run so far
  TileMeta t = next_tile(0);
  if (t.it >= 0) sm90::mbar_wait(q_full, 0);
  if constexpr (!cfg.overlap) {
    // Tile by tile. A tile the mask hides from all of this consumer's rows
    // (the other consumer's rows see some of it) changes nothing here: its
    // buffers are handed back unread. The next tile's mask copy starts
    // before this tile's P V, once its softmax is done with the copy, so
    // that P V and the next S hide its latency (a copy started just before
    // S, 16 KB a consumer for a bfloat16 mask, outlasted it).
    auto shown = [&](const TileMeta& x) { return !masked || my_kinds(x.kinds) != kHidden; };
    start_mask(t);
    for (; t.it >= 0; ++n) {
      if (!shown(t)) {
        const Stage v = stage_of(n);
        if (lane == 0) sm90::mbar_arrive(k_empty(v.s));
        sm90::mbar_wait(v_full(v.s), v.ph);  // the slot's load must land before it is reused
        if (lane == 0) sm90::mbar_arrive(v_empty(v.s));
        t = next_tile(n + 1);
        start_mask(t);
        continue;
      }
      s_step(t, n);
      finish_p();
      t = next_tile(n + 1);
      start_mask(t);
      pv_step(n);
    }
  } else if (t.it >= 0) {
    start_mask(t);
    s_step(t, n++);
    finish_p();
    for (t = next_tile(n); t.it >= 0; t = next_tile(++n)) {
      const Stage k = stage_of(n), v = stage_of(n - 1);
      start_mask(t);
      sm90::mbar_wait(v_full(v.s), v.ph);
      sm90::fence_operands(sc);
      sm90::fence_operands(acc);
      sm90::wgmma_fence();
      issue_s(sc, k.s);
      issue_pv(pa, v.s);
      sm90::wgmma_wait<1>();  // S is back; P V still running
      s_done(t, k.s);
      sm90::wgmma_wait<0>();
      pv_done(v.s);
      finish_p();
    }
    pv_step(n - 1);
  }

#pragma unroll
  for (int i = 0; i < 2; ++i)
    store_row<T>(p, out_mode, split, b, hr[i], q[i], q[i] < qt1, t4, i, m[i], l[i], acc);
#endif
}

template <typename T, int D, bool kPacked, MaskInst kMI, bool kCap>
bool launch_hopper_as(const KernelParams& p, cudaStream_t stream) {
  constexpr bool kMask = kMI != MaskInst::none;
  constexpr HopperConfig cfg = hopper_cfg<T, D, kPacked, kMask, kCap>;
  static_assert(hopper_smem_bytes(cfg, D) <= kSm90SmemBytes,
                "the block's tiles, barriers and mask copies outgrow an SM's shared memory");
  const int group = static_cast<int>(p.group);
  const int qrows = kPacked ? cfg.block_m / group : cfg.block_m;  // queries a block
  CUtensorMap tq, tk, tv, tm{};
  // K and V rows at or past k1 read as zeros, like the mma.sync kernel's
  // zero fill, so that keys outside the rectangle never reach P V.
  // Columns past D (Q, K) or Dv (V) read as zeros too: a narrower head
  // runs padded to the kernel's width D.
  if (!encode_rows_map(&tq, p.q, p.B, p.Hq, p.Lq, p.D, p.q_stride, qrows, kPacked ? group : 1) ||
      !encode_rows_map(&tk, p.k, p.B, p.Hkv, p.k1, p.D, p.k_stride, cfg.block_n) ||
      !encode_rows_map(&tv, p.v, p.B, p.Hkv, p.k1, p.Dv, p.v_stride, cfg.block_n))
    return false;
  // The mask by TMA where it can be described (else the kernel's cp.async
  // copies): rows of 16-byte aligned strides, each warp's 16 rows one to
  // four boxes.
  KernelParams kp = p;
  kp.mask_tma = 0;
  kp.fold_mask_mul = core::kLog2e / p.scale_log2;  // read where the scale is folded (!kCap)
  if (kMask && !kPacked && p.mask_kind != core::MaskKind::none && p.stage_mask) {
    const int es = static_cast<int>(dtype_size(p.mask_dtype));  // boolean: 1 byte
    kp.mask_tma = encode_mask_map(&tm, p.mask, p.B, p.Hq, p.Lq, p.Lk, p.mask_stride, es,
                                  staged_box_bytes(cfg.block_n * es), 16);
  }
  // The bias product for additive masks of the inputs' dtype copied by
  // TMA, where fold_mask_mul is exact in that dtype (1 / scale: 8 at
  // D = 64's default scale), so that v fold_mask_mul is the product the
  // FMA formed.
  kp.bias_mma = 0;
  // (The instantiation, MaskInst, already fixes an additive mask of T.)
  if (hopper_bias_mma<T, kPacked, kMI, kCap>(cfg) && kp.mask_tma) {
    const float x = kp.fold_mask_mul;
    constexpr bool kHalf = std::is_same_v<T, __half>;
    const std::uint16_t bits = kHalf ? core::float_to_fp16(x) : core::float_to_bf16(x);
    const float back = kHalf ? core::fp16_to_float(bits) : core::bf16_to_float(bits);
    if (back == x) {
      kp.bias_mma = 1;
      kp.bias_diag = bits;
    }
  }
  allow_dynamic_smem<hopper_kernel<T, D, kPacked, kMI, kCap>>(
      hopper_smem_bytes(cfg, D), "cudaFuncSetAttribute(hopper_kernel)");
  const dim3 grid(static_cast<unsigned>((p.q1 - p.q0 + qrows - 1) / qrows),
                  static_cast<unsigned>(p.B * (kPacked ? p.Hkv : p.Hq)),
                  static_cast<unsigned>(p.splits));
  hopper_kernel<T, D, kPacked, kMI, kCap>
      <<<grid, hopper_threads(cfg), hopper_smem_bytes(cfg, D), stream>>>(kp, tq, tk, tv, tm);
  check_cuda(cudaGetLastError(), "hopper_kernel launch");
  return true;
}

// Launches the kernel; false (nothing launched) when TMA cannot describe
// the tensors, so the caller runs the mma.sync kernel instead.
template <typename T, int D>
bool launch_hopper(const KernelParams& p, cudaStream_t stream) {
  // The instantiations without the soft-cap fold the scale into the
  // exponent, which keeps the order of the logits and their range only for
  // scale >= 2^-8 (a mask term scaled by 1 / scale then overflows only past
  // |v| = FLT_MAX / 256; scaled first, past FLT_MAX / 1.44); smaller, zero
  // or negative scales take the soft-cap's instantiations, which scale
  // first (and test for a cap at run time).
  const bool fold = p.scale_log2 >= core::kLog2e / 256.f;
  const bool mask = p.mask_kind != core::MaskKind::none, cap = p.softcap_log2 > 0.f || !fold;
  using M = MaskInst;
  if (p.packed)
    return mask || cap ? launch_hopper_as<T, D, true, M::any, true>(p, stream)
                       : launch_hopper_as<T, D, true, M::none, false>(p, stream);
  if (!mask)
    return cap ? launch_hopper_as<T, D, false, M::none, true>(p, stream)
               : launch_hopper_as<T, D, false, M::none, false>(p, stream);
  if (cap) return launch_hopper_as<T, D, false, M::any, true>(p, stream);
  switch (mask_elem_of(p)) {  // an instantiation per element type (MaskInst)
    case MaskElem::b8:
      return launch_hopper_as<T, D, false, M::b8, false>(p, stream);
    case MaskElem::f16:
      return launch_hopper_as<T, D, false, M::f16, false>(p, stream);
    case MaskElem::f32:
      return launch_hopper_as<T, D, false, M::f32, false>(p, stream);
    default:
      return launch_hopper_as<T, D, false, M::bf16, false>(p, stream);
  }
}

}  // namespace longattn::cuda
