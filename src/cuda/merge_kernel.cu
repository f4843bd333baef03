// Split-K combine: merges the partial states of a dispatch's splits with the
// row's initial state (sinks or the running state) and writes the dispatch's
// result (final O / LSE, or the running state).
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "cuda/check.hpp"
#include "cuda/device_common.cuh"

namespace longattn::cuda {
namespace {

constexpr int kMergeThreads = 256;
constexpr int kMergeWarps = kMergeThreads / 32;
static_assert(kMaxSplits <= kMergeThreads, "thread s holds split s's (m, l)");

// One block per row, so that the row's (m, l) is read and rewritten by one
// block with a barrier in between (several blocks per row raced on it in
// accumulate mode). Every split-K decode call runs this after the decode
// kernel (the packed Hopper kernel, or the vector kernel), so its latency is
// part of every decode step: the partials (still in L2) are read in two
// dependent rounds, not one round per split.
//  1. Thread s < S loads split s's (m, l): block max M, the factors
//     2^(m_s - M) to shared memory, block sum of the scaled l.
//  2. The o rows as float4: thread t owns dims 4c..4c+3 (c = t % (D/4)) of
//     the splits t / (D/4) + j * lanes, and issues four loads before the
//     first add. (A single warp looping over every split was latency-bound,
//     ~100 us on decode; four warps with one 4-byte load per split in flight
//     still waited one L2 round trip per split per warp.)
//  3. The lanes' sums add up through shared memory, with the initial state.
__global__ void __launch_bounds__(kMergeThreads)
    merge_kernel(const __grid_constant__ KernelParams p) {
  __shared__ float fac[kMaxSplits];
  __shared__ float red_m[kMergeWarps], red_l[kMergeWarps];
  __shared__ float4 part[kMergeThreads];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const i64 nq = p.q1 - p.q0, N = p.B * p.Hq * nq;
  const i64 r = blockIdx.x;
  const i64 bh = r / nq, b = bh / p.Hq, h = bh % p.Hq, q = p.q0 + r % nq;
  const int S = p.splits;
  // Launched early after the packed decode kernel (launch_merge): the
  // partials are complete only past this wait.
  wait_for_primary();

  float m0, l0;
  initial_ml(p, p.in_mode, b, h, q, m0, l0);
  const bool mine = tid < S;
  const float ms = mine ? p.part_m[tid * N + r] : -INFINITY;
  const float ls = mine ? p.part_l[tid * N + r] : 0.f;
  float M = fmaxf(ms, m0);
#pragma unroll
  for (int off = 16; off >= 1; off /= 2) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, off));
  if (lane == 0) red_m[warp] = M;
  __syncthreads();
  M = red_m[0];
#pragma unroll
  for (int w = 1; w < kMergeWarps; ++w) M = fmaxf(M, red_m[w]);
  // Factors onto the common max (core::rescale: zero when every part is empty).
  const float f = core::rescale(ms, M);
  if (mine) fac[tid] = f;
  float L = f * ls;
#pragma unroll
  for (int off = 16; off >= 1; off /= 2) L += __shfl_xor_sync(0xffffffffu, L, off);
  if (lane == 0) red_l[warp] = L;
  __syncthreads();  // also publishes fac
  const float f0 = core::rescale(m0, M);
  L = l0 * f0;
#pragma unroll
  for (int w = 0; w < kMergeWarps; ++w) L += red_l[w];

  // float4 columns of the padded rows (launch_merge checks width % 4).
  const int cols = p.width / 4;
  const int lanes = kMergeThreads / cols;  // splits read side by side
  const int c = tid % cols, sl = tid / cols;
  float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
  auto add = [&](float fs, const float4& x) {
    acc.x = fmaf(fs, x.x, acc.x);
    acc.y = fmaf(fs, x.y, acc.y);
    acc.z = fmaf(fs, x.z, acc.z);
    acc.w = fmaf(fs, x.w, acc.w);
  };
  if (sl < lanes) {
    // Row (s, r) of part_o starts at float4 (s * N + r) * cols.
    const float4* po = reinterpret_cast<const float4*>(p.part_o) + r * cols + c;
    const i64 split_stride = N * cols;
    int s = sl;
    for (; s + 3 * lanes < S; s += 4 * lanes) {
      float4 x[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) x[u] = po[(s + u * lanes) * split_stride];
#pragma unroll
      for (int u = 0; u < 4; ++u) add(fac[s + u * lanes], x[u]);
    }
    for (; s < S; s += lanes) add(fac[s], po[s * split_stride]);
  }
  part[tid] = acc;
  __syncthreads();

  float* st_o = p.in_mode == InMode::load || p.out_mode == OutMode::state
                    ? p.st_o + state_row(p, b, h, q) * p.st_pitch
                    : nullptr;
  const float inv = core::inv_sum(L);
  for (int c4 = tid; c4 < cols; c4 += kMergeThreads) {
    float4 sum = part[c4];
    for (int j = 1; j < lanes; ++j) {
      const float4 y = part[j * cols + c4];
      sum.x += y.x;
      sum.y += y.y;
      sum.z += y.z;
      sum.w += y.w;
    }
    const float o4[4] = {sum.x, sum.y, sum.z, sum.w};
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const i64 d = 4 * c4 + e;
      if (d >= p.Dv) break;  // padding columns of a narrower head
      float O = o4[e];
      if (p.in_mode == InMode::load) O += st_o[d] * f0;
      if (p.out_mode == OutMode::state) {
        st_o[d] = O;
        continue;
      }
      const i64 off = b * p.o_stride[0] + h * p.o_stride[1] + q * p.o_stride[2] + d * p.o_stride[3];
      const float x = O * inv;
      switch (p.dtype) {
        case DType::float32:
          static_cast<float*>(p.o)[off] = x;
          break;
        case DType::float16:
          static_cast<__half*>(p.o)[off] = __float2half_rn(x);
          break;
        default:  // bfloat16 (validation admits no other output dtype)
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
  if (p.width % 4 != 0 || p.width > 4 * kMergeThreads || p.splits > kMaxSplits ||
      reinterpret_cast<std::uintptr_t>(p.part_o) % 16 != 0)
    throw BackendError("[longattn::cuda] merge_kernel: width = " + std::to_string(p.width) +
                       ", splits = " + std::to_string(p.splits) +
                       " or an unaligned part_o (needs width % 4 == 0, splits <= " +
                       std::to_string(kMaxSplits) + ", 16-byte alignment)");
  const long long N = p.B * p.Hq * (p.q1 - p.q0);
  const dim3 grid(static_cast<unsigned>(N));
  // After the packed Hopper decode kernel, which lets its dependents
  // launch as soon as it starts, the merge launches while that kernel runs
  // (programmatic dependent launch) and waits for it on the device: on H100
  // this took a 32K-key decode call from 57.0 to 55.7 us.
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = dim3(kMergeThreads);
  cfg.stream = static_cast<cudaStream_t>(stream);
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = p.packed ? 1 : 0;
  check_cuda(cudaLaunchKernelEx(&cfg, merge_kernel, p), "merge_kernel launch");
}

}  // namespace longattn::cuda
