// The array mask's block summary on the device (core/mask_blocks.hpp): one
// CUDA block per 64 x 64 mask block, each thread reading one key column of
// 16 rows (consecutive threads, consecutive keys), the block's verdict by
// barrier votes.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "core/mask_blocks.hpp"
#include "cuda/check.hpp"
#include "cuda/device_common.cuh"

namespace longattn::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kRowsPerThread = static_cast<int>(core::kMaskBlock) * core::kMaskBlock / kThreads;

// blockIdx.x: key block; blockIdx.y: summary row (slice, query block) from row0.
__global__ void __launch_bounds__(kThreads)
    summary_kernel(const __grid_constant__ KernelParams p, std::uint8_t* out, i64 row0) {
  const core::BlockDims d = core::block_dims(p);
  const i64 row = row0 + blockIdx.y, kb = blockIdx.x;
  const i64 b = row / (d.nh * d.nq), h = row / d.nq % d.nh, qb = row % d.nq;
  const i64 j = kb * core::kMaskBlock + threadIdx.x % core::kMaskBlock;
  const i64 q_first = qb * core::kMaskBlock + threadIdx.x / core::kMaskBlock;
  bool shown = false, open = true, finite = true;
  if (j < p.Lk) {
#pragma unroll 4
    for (int r = 0; r < kRowsPerThread; ++r) {
      const i64 q = q_first + r * (kThreads / core::kMaskBlock);
      if (q >= p.Lq) break;
      // 0 or -inf for boolean masks; value * log2(e) for additive ones
      // (so -inf stays -inf, 0 stays 0 and NaN stays NaN, which is shown
      // and not open).
      const float t = mask_term(p, b, h, q, j);
      shown |= !(t == -INFINITY);
      open &= t == 0.f;
      finite &= isfinite(t);
    }
  }
  shown = __syncthreads_or(shown);
  open = __syncthreads_and(open);
  finite = __syncthreads_and(finite);
  if (threadIdx.x == 0)
    out[row * d.nk + kb] = static_cast<std::uint8_t>(open     ? core::BlockKind::open
                                                     : finite ? core::BlockKind::finite
                                                     : shown  ? core::BlockKind::partial
                                                              : core::BlockKind::hidden);
}

}  // namespace

void launch_mask_summary(const KernelParams& p, std::uint8_t* out, void* stream) {
  const core::BlockDims d = core::block_dims(p);
  const i64 rows = d.nb * d.nh * d.nq;
  if (rows == 0 || d.nk == 0) return;
  // Launches of at most 65535 summary rows (the grid's y limit) and about
  // 256 MiB of mask elements each, so that no single launch reads a large
  // mask whole (each is a GPU command of its own, well inside any budget).
  const i64 per_row = d.nk * core::kMaskBlock * core::kMaskBlock;
  const i64 chunk = std::clamp<i64>((i64{256} << 20) / per_row, 1, 65535);
  for (i64 r = 0; r < rows; r += chunk) {
    const dim3 grid(static_cast<unsigned>(d.nk), static_cast<unsigned>(std::min(chunk, rows - r)));
    summary_kernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(p, out, r);
    check_cuda(cudaGetLastError(), "summary_kernel launch");
  }
}

}  // namespace longattn::cuda
