// Split-K combine: merges the partial states of a dispatch's splits with the
// row's initial state (sinks or the running state) and writes the dispatch's
// result (final O / LSE, or the running state).
#include <cuda_runtime.h>

#include "cuda/check.hpp"
#include "cuda/device_common.cuh"

namespace longattn::cuda {
namespace {

constexpr int kMergeWarps = 4;
constexpr int kMaxChunks = 8;  // D / 32

// One block per row, so that the row's (m, l) is read and rewritten by one
// block with a barrier in between (several blocks per row raced on it in
// accumulate mode). The factors of all splits go to shared memory once; warp
// w sums splits w, w + 4, ... for all dims (independent loads in flight; a
// single warp looping over every split was latency-bound, ~100 us on decode),
// and the four partial sums add up.
__global__ void __launch_bounds__(kMergeWarps * 32)
    merge_kernel(const __grid_constant__ KernelParams p) {
  __shared__ float fac[kMaxSplits];
  __shared__ float red[2][kMergeWarps];
  __shared__ float part[kMergeWarps][kMaxChunks * 32];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const i64 nq = p.q1 - p.q0, N = p.B * p.Hq * nq;
  const i64 r = blockIdx.x;
  const i64 bh = r / nq, b = bh / p.Hq, h = bh % p.Hq, q = p.q0 + r % nq;
  const int S = p.splits;
  const int chunks = static_cast<int>((p.D + 31) / 32);

  float m0, l0;
  initial_ml(p, p.in_mode, b, h, q, m0, l0);
  float M = m0;
  for (int s = tid; s < S; s += kMergeWarps * 32) M = fmaxf(M, p.part_m[s * N + r]);
#pragma unroll
  for (int off = 16; off >= 1; off /= 2) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, off));
  if (lane == 0) red[0][warp] = M;
  __syncthreads();
  M = fmaxf(fmaxf(red[0][0], red[0][1]), fmaxf(red[0][2], red[0][3]));
  // Factors onto the common max; all zero when every part is empty (no NaN).
  float L = 0.f;
  for (int s = tid; s < S; s += kMergeWarps * 32) {
    const float f = M == -INFINITY ? 0.f : exp2f(p.part_m[s * N + r] - M);
    fac[s] = f;
    L += f * p.part_l[s * N + r];
  }
#pragma unroll
  for (int off = 16; off >= 1; off /= 2) L += __shfl_xor_sync(0xffffffffu, L, off);
  if (lane == 0) red[1][warp] = L;
  __syncthreads();
  const float f0 = M == -INFINITY ? 0.f : exp2f(m0 - M);
  L = red[1][0] + red[1][1] + red[1][2] + red[1][3] + l0 * f0;

  float acc[kMaxChunks];
#pragma unroll
  for (int c = 0; c < kMaxChunks; ++c) acc[c] = 0.f;
  for (int s = warp; s < S; s += kMergeWarps) {
    const float f = fac[s];
    const float* po = p.part_o + (s * N + r) * p.D;
#pragma unroll
    for (int c = 0; c < kMaxChunks; ++c)
      if (c < chunks && c * 32 + lane < p.D) acc[c] += f * po[c * 32 + lane];
  }
#pragma unroll
  for (int c = 0; c < kMaxChunks; ++c) part[warp][c * 32 + lane] = acc[c];
  __syncthreads();

  float* st_o = p.in_mode == InMode::load || p.out_mode == OutMode::state
                    ? p.st_o + state_row(p, b, h, q) * p.D
                    : nullptr;
  const float inv = core::inv_sum(L);
  for (i64 d = tid; d < p.D; d += kMergeWarps * 32) {
    float O = part[0][d] + part[1][d] + part[2][d] + part[3][d];
    if (p.in_mode == InMode::load) O += st_o[d] * f0;
    if (p.out_mode == OutMode::state) {
      st_o[d] = O;
    } else {
      const i64 off = b * p.o_s[0] + h * p.o_s[1] + q * p.o_s[2] + d * p.o_s[3];
      const float x = O * inv;
      switch (p.dtype) {
        case 0:
          static_cast<float*>(p.o)[off] = x;
          break;
        case 1:
          static_cast<__half*>(p.o)[off] = __float2half_rn(x);
          break;
        default:
          static_cast<__nv_bfloat16*>(p.o)[off] = __float2bfloat16_rn(x);
          break;
      }
    }
  }
  // Every thread read m0 / l0 before the barriers above.
  if (tid == 0) store_ml(p, p.out_mode, 0, b, h, q, M, L);
}

}  // namespace

void launch_merge(const KernelParams& p, void* stream) {
  const long long N = p.B * p.Hq * (p.q1 - p.q0);
  const dim3 grid(static_cast<unsigned>(N));
  merge_kernel<<<grid, kMergeWarps * 32, 0, static_cast<cudaStream_t>(stream)>>>(p);
  check_cuda(cudaGetLastError(), "merge_kernel launch");
}

}  // namespace longattn::cuda
