// The flat parameter block every CUDA kernel of the backend reads, the tile
// sizes (one source of truth, used by the kernels at compile time and by the
// host to size grids and split-K), and the launchers the per-(dtype, head_dim)
// translation units define.
//
// Included by host-only C++ (cuda_backend.cpp) and by the .cu files, so it
// uses no CUDA types.
#pragma once

#include <cstdint>

#include "core/problem.hpp"

namespace longattn::cuda {

// Where a kernel's row starts from.
enum class InMode : std::int32_t {
  empty = 0,  // (m = -inf, l = 0, o = 0)
  sinks = 1,  // (m = sink * log2 e, l = 1, o = 0); empty when there are no sinks
  load = 2,   // the running state in device memory
};

// Where a kernel's row ends up.
enum class OutMode : std::int32_t {
  final = 0,    // O = o / l in the output dtype, LSE (base e) if asked
  state = 1,    // the running state (m, l, o) in device memory
  partial = 2,  // one split-K slot of the partial workspace, merged later
};

// Which kernel serves a dispatch.
enum class KernelKind : std::int32_t {
  tensor_core = 0,  // prefill: mma.sync m16n8k16, float16 / bfloat16
  vector = 1,       // float32, and decode (<= 8 packed rows) where the
                    // Hopper kernel's packed mode does not serve: CUDA cores,
                    // a GQA group's query heads packed so each K/V row is
                    // read once
  wgmma = 2,        // sm_90a, TMA + warpgroup MMA (hopper_kernel.cuh): prefill,
                    // and decode in its packed mode; the launcher falls back
                    // to tensor_core when TMA cannot describe the layout
};

// The validated problem (every size, pointer, stride, mask and scale, as
// core::Problem defines them) plus what one dispatch adds. Built from the
// Problem by copying it whole (make_params in cuda_backend.cpp), so the two
// cannot drift apart.
struct KernelParams : core::Problem {
  // Whether q / k / v rows can be read 16 bytes at a time: last stride 1,
  // the other strides multiples of 16 bytes, base pointer 16-byte aligned.
  // Otherwise the kernels read them element by element (any strides).
  std::int32_t vec_q = 0, vec_k = 0, vec_v = 0;
  // Whether the mask's terms of keys (j, j + 1), j even, are adjacent and
  // aligned as a pair: unit key stride, the other strides even, the base
  // aligned to two elements.
  std::int32_t vec_mask = 0;
  // Whether the mask's rows of every key tile of the dispatch can be copied
  // 16 bytes at a time (unit key stride, 16-byte aligned base, strides and
  // first key): the Hopper kernel then copies them with cp.async, or by TMA
  // where mask_tma says so.
  std::int32_t stage_mask = 0;
  // Whether the Hopper kernel copies those rows by TMA instead (its
  // launcher sets it where it could encode the mask's tensor map).
  std::int32_t mask_tma = 0;
  // log2(e) / scale_log2: the Hopper kernel's factor for mask terms where
  // it folds the scale into the exponent (its launcher sets it).
  float fold_mask_mul = 0.f;
  // Whether the Hopper kernel adds bias tiles of finite blocks
  // (core::BlockKind::finite) by tensor-core product (its launcher sets it
  // for masks of the inputs' 16-bit dtype where fold_mask_mul is exact in
  // it), and that factor's 16-bit pattern (the diagonal of the product's B
  // operand).
  std::int32_t bias_mma = 0;
  std::uint32_t bias_diag = 0;
  // 2 log2(e) / softcap_log2 (0 without a soft-cap): the 16-bit kernels'
  // tanh is 1 - 2 / (2^(cap_exp t) + 1) (scale_tile).
  float cap_exp = 0.f;

  // The rectangle [q0, q1) x [k0, k1).
  std::int64_t q0 = 0, q1 = 0, k0 = 0, k1 = 0;

  InMode in_mode = InMode::empty;
  OutMode out_mode = OutMode::final;

  // Running state (m base 2): row (b, h, q) at ((b*Hq + h) * st_rows + q - st_q0);
  // its o at st_o[row * st_pitch + d], d < Dv (state_pitch).
  float* st_m = nullptr;
  float* st_l = nullptr;
  float* st_o = nullptr;
  std::int64_t st_q0 = 0, st_rows = 0, st_pitch = 0;

  // Split-K partial workspace: `splits` slots of N = B*Hq*(q1-q0) rows each;
  // row (b, h, q) of slot s at s*N + (b*Hq + h)*(q1-q0) + q - q0.
  // part_m[s*N + r], part_l[...], part_o[(s*N + r) * width + d]; part_o is
  // 16-byte aligned (the merge kernel reads it as float4, width % 4 == 0).
  float* part_m = nullptr;
  float* part_l = nullptr;
  float* part_o = nullptr;
  std::int32_t splits = 1;

  // Vector kernel: packed rows per block (1, 2, 4 or 8).
  std::int32_t rows_per_block = 8;
  // Hopper kernel: rows are (GQA head, query) pairs of one KV head, `group`
  // (a power of 2 <= 64) heads x 64 / group queries a block (decode).
  std::int32_t packed = 0;

  KernelKind kind = KernelKind::tensor_core;

  // The head-dim width the kernel was instantiated for (its template D),
  // >= max(D, Dv). Narrower heads run padded: columns of Q and K past D and
  // of V past Dv read as zeros, and only the first Dv columns are read from
  // or written to the output and the running state.
  std::int32_t width = 0;
};

// Floats between running-state rows: Dv rounded up to 4, so each row is
// 16-byte aligned and the kernels' float2 accesses stay in it. One pitch
// for every kernel a call's dispatches may use, whatever their width.
constexpr std::int64_t state_pitch(std::int64_t dv) { return (dv + 3) / 4 * 4; }

// Tensor-core prefill tiles: each warp owns m_tiles x 16 query rows; key
// tiles of block_n. With two m-tiles a warp feeds every K/V fragment it reads
// from shared memory to two mma's, which halves shared-memory traffic per
// FLOP (the limit of the one-tile version: ~200 TFLOP/s on H200). Q's
// fragments are re-read from shared memory each key tile, leaving registers
// for the O accumulators.
//
// `stages` = 2 double-buffers K and V: K(i+1) and V(i+1) are issued while
// tile i is computed. Measured on H100 (2026-11-27) it lost 3-4% at D = 128
// and D = 256 (the loop is shared-memory-bandwidth bound, not load-latency
// bound), so only D = 64 uses it, with 128-key tiles (FlashAttention-2's
// d64 shape), 1-2% faster than 64-key single-buffered tiles.
struct TcConfig {
  int warps;
  int m_tiles;
  int block_m;
  int block_n;
  int stages;  // K/V shared-memory buffers (1 or 2)
};
constexpr TcConfig tc_config(int d) {
  // D > 128: the O accumulators leave room for one m-tile per warp; eight
  // warps share each K/V tile instead (FlashAttention-2's d256 shape).
  if (d <= 64) return TcConfig{4, 2, 128, 128, 2};
  return d <= 128 ? TcConfig{4, 2, 128, 64, 1} : TcConfig{8, 1, 128, 64, 1};
}
constexpr int tc_smem_bytes(int d) {
  // Q tile + `stages` K and V tiles, rows padded by 8 elements (16 bytes)
  // so that ldmatrix's eight 16-byte row reads fall in distinct banks.
  return (tc_config(d).block_m + 2 * tc_config(d).stages * tc_config(d).block_n) * (d + 8) * 2;
}

// Hopper prefill (hopper_kernel.cuh): one producer warpgroup streams Q, K
// and V tiles with TMA into `stages`-deep K/V buffers; consumer
// warpgroups own 64 query rows each (block_m 128: two, 192: three) and run
// S = Q K^T and O += P V on wgmma. Head dims with 64-element (128-byte) column blocks only.
// block_n 128 for D <= 128; D = 256 takes 64-key tiles, since its O
// accumulators (128 registers a thread) leave room for a 64-wide S only.
//
// `overlap`: run softmax(i) while P(i-1) V(i-1) is on the tensor cores
// (see the kernel). Measured on H200 (2026-11-27, 16K square, bf16): D = 128
// 543 -> 585 TFLOP/s, D = 256 593 -> 606; D = 64 400 -> 374, so off there
// (its short products leave too little to hide the softmax behind). D = 64
// instead takes three consumer warpgroups (block_m 192, FlashAttention-3's
// d64 shape), so more softmax runs beside other warpgroups' products:
// 400 -> 470 TFLOP/s; its O and S fit the 128 registers that allows.
struct HopperConfig {
  int block_m;
  int block_n;
  int stages;
  bool overlap;
};
constexpr bool hopper_head_dim(int d) { return d == 64 || d == 128 || d == 256; }
constexpr HopperConfig hopper_config(int d) {
  if (d <= 64) return HopperConfig{192, 128, 2, false};
  return d <= 128 ? HopperConfig{128, 128, 2, true} : HopperConfig{128, 64, 2, true};
}
// Packed mode of the same kernel (KernelParams::packed), for decode: a
// block's 64 rows are the query heads of one KV head's GQA group times
// 64 / group queries, so each K/V tile read serves the whole group on the
// tensor cores (the vector kernel's packing; most of the 64 rows are empty
// at one query, which costs tensor-core time the memory-bound loop has to
// spare). One consumer warpgroup and a deeper ring of 64-key tiles: four
// stages keep 4 x 32 KB (D = 128) of K and V in flight per SM without
// registers, against the vector kernel's register-bound ~8 warps of loads.
// On H100 (2026-11-27) it took the 32K-key decode from 65% to 78% of copy
// bandwidth and 128K from 81% to 95%.
constexpr HopperConfig hopper_decode_config(int d) {
  return HopperConfig{64, 64, d <= 128 ? 4 : 2, false};
}
// A producer warpgroup + one consumer warpgroup per 64 query rows.
constexpr int hopper_consumers(HopperConfig c) { return c.block_m / 64; }
constexpr int hopper_threads(HopperConfig c) { return 128 * (1 + hopper_consumers(c)); }
// Shared-memory bytes for the mbarriers (the ring's, and one per consumer
// warp for its TMA mask copies), the ring slots' tile records and the
// producer's batch of 32 tiles' mask block kinds.
constexpr int kHopperBarrierBytes = 512;
// Shared-memory bytes of one consumer's copy of its 64 rows of a tile's
// array mask: 4-byte elements at most (swizzled, no padding: the hopper
// kernel's stage_mask). A multiple of 1024 bytes, so that every copy stays
// aligned for TMA's swizzle.
constexpr int hopper_mask_stage_bytes(int block_n) { return 64 * block_n * 4; }
// Offset in a consumer's mask copy of the bias product's 16 x 16 diagonal
// (2 KB: 16 rows of 128 bytes), past the 64 rows of a 16-bit mask.
constexpr int bias_diag_offset(int block_n) { return 64 * block_n * 2; }
static_assert(bias_diag_offset(64) + 16 * 128 <= hopper_mask_stage_bytes(64));
// Dynamic shared memory one block may take on sm_90 (227 KB).
constexpr int kSm90SmemBytes = 232448;
constexpr int hopper_smem_bytes(HopperConfig c, int d) {
  // Q tile + stages x (K and V tiles) + each consumer's mask copy +
  // barriers, in that order, + 1024 for aligning the base to the 128-byte
  // swizzle's 1024-byte pattern. Under kSm90SmemBytes for every
  // configuration (launch_hopper_as asserts it).
  return (c.block_m + 2 * c.stages * c.block_n) * d * 2 + kHopperBarrierBytes +
         hopper_consumers(c) * hopper_mask_stage_bytes(c.block_n) + 1024;
}

// Vector kernel: 4 warps; a lane holds 8 dims of a key, so a key spans
// lanes_per_key lanes (D / 8 rounded up to a power of 2).
constexpr int kVecWarps = 4;
// Vector-kernel blocks resident per SM: the kernel's __launch_bounds__
// minimum, so the compiler caps registers to fit it (ptxas, sm_90a: 229
// registers for bfloat16 D = 128 with 4 rows, no spills; a minimum of 3
// spills there). The host sizes split-K to waves of sms x this many blocks.
constexpr int kVecBlocksPerSm = 2;
constexpr int vec_lanes_per_key(int d) {
  int n = 1;
  while (n * 8 < d) n *= 2;
  return n;
}
// Keys each lane group streams per step: more keys in flight for fewer rows
// (registers hold them in their storage type).
// float32 rows take twice the registers, so half as many keys.
constexpr int vec_keys_per_group(int rows, int elem_bytes) {
  const int n = rows <= 2 ? 8 : rows == 4 ? 4 : 2;
  return elem_bytes == 4 ? (n > 2 ? n / 2 : 1) : n;
}

// Most split-K slots one dispatch uses.
constexpr int kMaxSplits = 256;

// Merge kernel (split-K partials + initial state -> output or state).
// Defined in merge_kernel.cu.
void launch_merge(const KernelParams& p, void* stream);

// The array mask's block summary (core/mask_blocks.hpp) into `out`
// (device memory, block_dims layout). Defined in mask_summary.cu.
void launch_mask_summary(const KernelParams& p, std::uint8_t* out, void* stream);

// Per-(dtype, head_dim) launchers, defined by the generated translation
// units (instantiate.cu.in). `stream` is a cudaStream_t. They return the
// kernel that ran: p.kind, or tensor_core where the Hopper kernel cannot
// describe the layout to TMA and the launcher fell back.
using Launcher = KernelKind (*)(const KernelParams& p, void* stream);
// Resident blocks per SM of the tensor-core kernel (0 for float32), from
// cudaOccupancyMaxActiveBlocksPerMultiprocessor on the current device.
using Occupancy = int (*)();
struct LauncherEntry {
  int dtype;  // longattn::DType as int
  int head_dim;
  Launcher launch;
  Occupancy tc_blocks_per_sm;
};
// The table of instantiated launchers (generated registry).
extern const LauncherEntry kLaunchers[];
extern const int kNumLaunchers;

}  // namespace longattn::cuda
