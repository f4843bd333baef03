// Vector (CUDA-core) kernel: decode, and the float32 path.
//
// One block = R packed query rows of one (b, kv head) against one split of
// the rectangle's keys. The packed rows are the query heads of the GQA group
// (inner) times the rectangle's queries (outer), so each K/V row is read once
// for all the heads that share it. A key spans D/8 lanes (8 dims a lane);
// each lane group streams kKeys keys per step with 16-byte loads, keeps its
// own online-softmax state, and the groups merge through shared memory at
// the end by the state merge rule (core/state.hpp).
//
// With splits > 1 every block writes a partial state and merge_kernel.cu
// combines them (split-K), so batch-1 decode still fills the GPU.
#pragma once

#include <cuda_runtime.h>

#include "cuda/check.hpp"
#include "cuda/device_common.cuh"

namespace longattn::cuda {

// Eight consecutive dims of a row, kept in their storage type until used so
// that more loads fit in registers (in flight) at once.
template <typename T>
struct Raw8 {
  uint4 a;  // 8 x 16-bit
};
template <>
struct Raw8<float> {
  float4 a, b;
};

// Eight dims from ptr, of which the first n exist (a head narrower than the
// kernel's width ends inside a lane's eight); the rest read as zeros.
template <typename T>
__device__ __forceinline__ void load_raw(Raw8<T>& r, const T* ptr, i64 col_stride, bool vec,
                                         bool valid, int n) {
  if (!valid || n <= 0) {
    r = Raw8<T>{};
  } else if (vec && n >= 8) {
    if constexpr (sizeof(T) == 4) {
      r.a = reinterpret_cast<const float4*>(ptr)[0];
      r.b = reinterpret_cast<const float4*>(ptr)[1];
    } else {
      r.a = *reinterpret_cast<const uint4*>(ptr);
    }
  } else {
    alignas(16) T tmp[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) tmp[e] = e < n ? ptr[e * col_stride] : from_f<T>(0.f);
    r = *reinterpret_cast<const Raw8<T>*>(tmp);
  }
}

template <typename T>
__device__ __forceinline__ void to_floats(const Raw8<T>& r, float (&x)[8]) {
  if constexpr (sizeof(T) == 4) {
    x[0] = r.a.x;
    x[1] = r.a.y;
    x[2] = r.a.z;
    x[3] = r.a.w;
    x[4] = r.b.x;
    x[5] = r.b.y;
    x[6] = r.b.z;
    x[7] = r.b.w;
  } else {
    const T* h = reinterpret_cast<const T*>(&r.a);
#pragma unroll
    for (int e = 0; e < 8; ++e) x[e] = to_f<T>(h[e]);
  }
}

template <typename T, int D, int R>
__global__ void __launch_bounds__(kVecWarps * 32, kVecBlocksPerSm)
    vector_kernel(const __grid_constant__ KernelParams p) {
  constexpr int LPK = vec_lanes_per_key(D);                               // lanes per key
  constexpr int KPW = 32 / LPK;                                           // lane groups per warp
  constexpr int NB = vec_keys_per_group(R, static_cast<int>(sizeof(T)));  // keys per group per step
  constexpr int G = kVecWarps * KPW;                                      // lane groups per block
  constexpr int KSTEP = G * NB;                                           // keys per block per step
  constexpr int NT = kVecWarps * 32;

  __shared__ float sm_m[G][R], sm_l[G][R];
  __shared__ float sm_o[G][R][D];

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int c = lane % LPK;
  const bool active = c * 8 < D;
  const int grp = warp * KPW + lane / LPK;
  const i64 b = blockIdx.y / p.Hkv, hkv = blockIdx.y % p.Hkv;
  const i64 nq = p.q1 - p.q0, P = p.group * nq;
  const i64 p0 = static_cast<i64>(blockIdx.x) * R;
  const int split = blockIdx.z;
  const InMode in_mode = p.splits > 1 ? InMode::empty : p.in_mode;
  const OutMode out_mode = p.splits > 1 ? OutMode::partial : p.out_mode;

  // Keys the block's rows can see, [kbeg, kend) (from the first row's
  // window edge to the last row's diagonal), then this split's share
  // (whole steps from kbeg).
  const i64 qfirst = p.q0 + min(p0, P - 1) / p.group;
  const i64 qlast = p.q0 + (min(p0 + R, P) - 1) / p.group;
  const i64 kend = min(p.k1, max(p.k0, p.key_end(qlast)));
  const i64 kbeg = min(kend, max(p.k0, p.key_begin(qfirst)));
  const i64 steps = kend > kbeg ? (kend - kbeg + KSTEP - 1) / KSTEP : 0;
  const i64 per = (steps + p.splits - 1) / p.splits;
  const i64 kb = kbeg + min(steps, split * per) * KSTEP;
  const i64 ke = min(kend, kbeg + min(steps, split * per + per) * KSTEP);
  const bool need_extra = p.causal || p.window_left >= 0 || p.window_right >= 0 ||
                          p.mask_kind != core::MaskKind::none || p0 + R > P;

  // Queries, pre-scaled to base 2.
  float qv[R][8];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const i64 pi = p0 + r;
    const bool valid = pi < P && active;
    const i64 h = hkv * p.group + pi % p.group, q = p.q0 + pi / p.group;
    const T* qp = valid ? static_cast<const T*>(p.q) + b * p.q_stride[0] + h * p.q_stride[1] +
                              q * p.q_stride[2] + c * 8 * p.q_stride[3]
                        : nullptr;
    Raw8<T> raw;
    load_raw<T>(raw, qp, p.q_stride[3], p.vec_q, valid, static_cast<int>(p.D) - c * 8);
    to_floats<T>(raw, qv[r]);
#pragma unroll
    for (int e = 0; e < 8; ++e) qv[r][e] *= p.scale_log2;
  }

  float m[R], l[R], o[R][8];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.f;
#pragma unroll
    for (int e = 0; e < 8; ++e) o[r][e] = 0.f;
  }

  const T* kbase =
      static_cast<const T*>(p.k) + b * p.k_stride[0] + hkv * p.k_stride[1] + c * 8 * p.k_stride[3];
  const T* vbase =
      static_cast<const T*>(p.v) + b * p.v_stride[0] + hkv * p.v_stride[1] + c * 8 * p.v_stride[3];

  i64 hr[R], qr[R];  // head and query of each packed row
#pragma unroll
  for (int r = 0; r < R; ++r) {
    hr[r] = hkv * p.group + (p0 + r) % p.group;
    qr[r] = p.q0 + (p0 + r) / p.group;
  }

  // Software pipeline: the next step's K/V rows are loaded (kn, vn) while
  // this step's are used, so each warp keeps two steps of loads in flight.
  Raw8<T> kr[NB], vr[NB];
  auto load_step = [&](i64 j0, Raw8<T>(&kd)[NB], Raw8<T>(&vd)[NB]) {
    const i64 jb = j0 + grp * NB;
#pragma unroll
    for (int u = 0; u < NB; ++u) {
      const bool valid = jb + u < ke && active;
      load_raw<T>(kd[u], kbase + (valid ? (jb + u) * p.k_stride[2] : 0), p.k_stride[3], p.vec_k,
                  valid, static_cast<int>(p.D) - c * 8);
      load_raw<T>(vd[u], vbase + (valid ? (jb + u) * p.v_stride[2] : 0), p.v_stride[3], p.vec_v,
                  valid, static_cast<int>(p.Dv) - c * 8);
    }
  };
  if (kb < ke) load_step(kb, kr, vr);

  for (i64 j0 = kb; j0 < ke; j0 += KSTEP) {
    const i64 jb = j0 + grp * NB;
    Raw8<T> kn[NB], vn[NB];
    load_step(j0 + KSTEP, kn, vn);  // all invalid (no loads) past the end
    float s[R][NB];
#pragma unroll
    for (int u = 0; u < NB; ++u) {
      float kx[8];
      to_floats<T>(kr[u], kx);
#pragma unroll
      for (int r = 0; r < R; ++r) {
        float x = 0.f;
#pragma unroll
        for (int e = 0; e < 8; ++e) x = fmaf(qv[r][e], kx[e], x);
        s[r][u] = x;
      }
    }
#pragma unroll
    for (int off = LPK / 2; off >= 1; off /= 2)
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int u = 0; u < NB; ++u) s[r][u] += __shfl_xor_sync(0xffffffffu, s[r][u], off);

    // The soft-cap in a pass of its own behind one branch a step: as a
    // per-score test inside the loop below it slowed uncapped calls too
    // (H200, float32 d128 4K causal: 33.8 -> 26.8 ms once moved out).
    if (p.softcap_log2 > 0.f) {
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int u = 0; u < NB; ++u) s[r][u] = capped(p, s[r][u]);
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
      float mx = -INFINITY;
#pragma unroll
      for (int u = 0; u < NB; ++u) {
        const i64 j = jb + u;
        if (j >= ke) {
          s[r][u] = -INFINITY;
        } else if (need_extra) {
          s[r][u] += extra_term(p, b, hr[r], qr[r], j);
        }
        mx = fmaxf(mx, s[r][u]);
      }
      const float m_new = fmaxf(m[r], mx);
      const core::OnlineStep st = core::online_step(m[r], m_new, FastExp2{});
      m[r] = m_new;
      float sum = 0.f;
#pragma unroll
      for (int u = 0; u < NB; ++u) {
        s[r][u] = fast_exp2(s[r][u] - st.shift);  // s now holds p
        sum += s[r][u];
      }
      l[r] = l[r] * st.alpha + sum;
#pragma unroll
      for (int e = 0; e < 8; ++e) o[r][e] *= st.alpha;
    }
#pragma unroll
    for (int u = 0; u < NB; ++u) {
      float vx[8];
      to_floats<T>(vr[u], vx);
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int e = 0; e < 8; ++e) o[r][e] = fmaf(s[r][u], vx[e], o[r][e]);
    }
#pragma unroll
    for (int u = 0; u < NB; ++u) {
      kr[u] = kn[u];
      vr[u] = vn[u];
    }
  }

  // The initial state is read once into shared memory before the barrier:
  // the thread that writes a row's new (m, l) below must not overtake the
  // threads still reading the old ones (in place, accumulate mode).
  __shared__ float sm_m0[R], sm_l0[R];
  if (tid < R && p0 + tid < P)
    initial_ml(p, in_mode, b, hkv * p.group + (p0 + tid) % p.group, p.q0 + (p0 + tid) / p.group,
               sm_m0[tid], sm_l0[tid]);
#pragma unroll
  for (int r = 0; r < R; ++r) {
    if (c == 0) {
      sm_m[grp][r] = m[r];
      sm_l[grp][r] = l[r];
    }
    if (active) {
#pragma unroll
      for (int e = 0; e < 8; ++e) sm_o[grp][r][c * 8 + e] = o[r][e];
    }
  }
  __syncthreads();

  // Merge the lane groups and the initial state; one thread per (row, dim).
  for (int idx = tid; idx < R * D; idx += NT) {
    const int r = idx / D, d = idx % D;
    const i64 pi = p0 + r;
    if (pi >= P || d >= p.Dv) continue;  // past Dv: a narrower head's padding
    const i64 h = hkv * p.group + pi % p.group, q = p.q0 + pi / p.group;
    const float m0 = sm_m0[r], l0 = sm_l0[r];
    float M = m0;
#pragma unroll
    for (int gi = 0; gi < G; ++gi) M = fmaxf(M, sm_m[gi][r]);
    float L = 0.f, O = 0.f;
    if (M != -INFINITY) {  // else every side is empty and stays so
      const float f0 = core::rescale(m0, M);
      L = l0 * f0;
      if (in_mode == InMode::load) O = p.st_o[state_row(p, b, h, q) * p.st_pitch + d] * f0;
#pragma unroll
      for (int gi = 0; gi < G; ++gi) {
        const float f = core::rescale(sm_m[gi][r], M);
        L += sm_l[gi][r] * f;
        O += sm_o[gi][r][d] * f;
      }
    }
    if (d == 0) store_ml(p, out_mode, split, b, h, q, M, L);
    if (out_mode == OutMode::final)
      out_row<T>(p, b, h, q)[d * p.o_stride[3]] = from_f<T>(O * core::inv_sum(L));
    else
      o_slot(p, out_mode, split, b, h, q)[d] = O;
  }
}

template <typename T, int D, int R>
void launch_vector_rows(const KernelParams& p, cudaStream_t stream) {
  const i64 P = p.group * (p.q1 - p.q0);
  const dim3 grid(static_cast<unsigned>((P + R - 1) / R), static_cast<unsigned>(p.B * p.Hkv),
                  static_cast<unsigned>(p.splits));
  vector_kernel<T, D, R><<<grid, kVecWarps * 32, 0, stream>>>(p);
  check_cuda(cudaGetLastError(), "vector_kernel launch");
}

template <typename T, int D>
void launch_vector(const KernelParams& p, cudaStream_t stream) {
  switch (p.rows_per_block) {
    case 1:
      return launch_vector_rows<T, D, 1>(p, stream);
    case 2:
      return launch_vector_rows<T, D, 2>(p, stream);
    case 4:
      return launch_vector_rows<T, D, 4>(p, stream);
    case 8:
      return launch_vector_rows<T, D, 8>(p, stream);
    default:
      throw BackendError("[longattn::cuda] vector kernel: rows_per_block = " +
                         std::to_string(p.rows_per_block) + " is not 1, 2, 4 or 8");
  }
}

}  // namespace longattn::cuda
