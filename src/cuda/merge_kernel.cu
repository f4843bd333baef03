// Split-K combine: merges the partial states of a dispatch's splits with the
// row's initial state (sinks or the running state) and writes the dispatch's
// result (final O / LSE, or the running state). One warp per row.
#include <cuda_runtime.h>

#include "cuda/check.hpp"
#include "cuda/device_common.cuh"

namespace longattn::cuda {
namespace {

constexpr int kMergeWarps = 4;

__global__ void __launch_bounds__(kMergeWarps * 32) merge_kernel(const __grid_constant__ KernelParams p) {
  __shared__ float fac[kMergeWarps][kMaxSplits];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const i64 nq = p.q1 - p.q0, N = p.B * p.Hq * nq;
  const i64 r = static_cast<i64>(blockIdx.x) * kMergeWarps + warp;
  if (r >= N) return;
  const i64 bh = r / nq, b = bh / p.Hq, h = bh % p.Hq, q = p.q0 + r % nq;

  float m0, l0;
  initial_ml(p, p.in_mode, b, h, q, m0, l0);
  float M = m0;
  for (int s = lane; s < p.splits; s += 32) M = fmaxf(M, p.part_m[s * N + r]);
#pragma unroll
  for (int off = 16; off >= 1; off /= 2) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, off));
  // Factors onto the common max; all zero when every part is empty (no NaN).
  float L = 0.f;
  for (int s = lane; s < p.splits; s += 32) {
    const float f = M == -INFINITY ? 0.f : exp2f(p.part_m[s * N + r] - M);
    fac[warp][s] = f;
    L += f * p.part_l[s * N + r];
  }
#pragma unroll
  for (int off = 16; off >= 1; off /= 2) L += __shfl_xor_sync(0xffffffffu, L, off);
  const float f0 = M == -INFINITY ? 0.f : exp2f(m0 - M);
  L += l0 * f0;
  __syncwarp();

  const float inv = core::inv_sum(L);
  float* st_o = p.in_mode == InMode::load || p.out_mode == OutMode::state
                    ? p.st_o + state_row(p, b, h, q) * p.D
                    : nullptr;
  for (i64 d = lane; d < p.D; d += 32) {
    float O = p.in_mode == InMode::load ? st_o[d] * f0 : 0.f;
    for (int s = 0; s < p.splits; ++s) O += fac[warp][s] * p.part_o[(s * N + r) * p.D + d];
    if (p.out_mode == OutMode::state) {
      st_o[d] = O;
    } else {
      const i64 off = b * p.o_s[0] + h * p.o_s[1] + q * p.o_s[2] + d * p.o_s[3];
      const float x = O * inv;
      switch (p.dtype) {
        case 0: static_cast<float*>(p.o)[off] = x; break;
        case 1: static_cast<__half*>(p.o)[off] = __float2half_rn(x); break;
        default: static_cast<__nv_bfloat16*>(p.o)[off] = __float2bfloat16_rn(x); break;
      }
    }
  }
  if (lane == 0) store_ml(p, p.out_mode, 0, b, h, q, M, L);
}

}  // namespace

void launch_merge(const KernelParams& p, void* stream) {
  const long long N = p.B * p.Hq * (p.q1 - p.q0);
  const unsigned blocks = static_cast<unsigned>((N + kMergeWarps - 1) / kMergeWarps);
  merge_kernel<<<blocks, kMergeWarps * 32, 0, static_cast<cudaStream_t>(stream)>>>(p);
  check_cuda(cudaGetLastError(), "merge_kernel launch");
}

}  // namespace longattn::cuda
