// Device-side inputs and masks (device_fill.hpp states the formulas).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "device_fill.hpp"

namespace longattn::bench::gpu {
namespace {

__device__ __forceinline__ std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

__global__ void uniform_kernel(__nv_bfloat16* p, std::uint64_t n, std::uint64_t seed) {
  for (std::uint64_t i = blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::uint64_t>(gridDim.x) * blockDim.x) {
    const float u = static_cast<float>(mix(i * 0x9e3779b97f4a7c15ull + seed) >> 40) * 0x1.0p-24f;
    p[i] = __float2bfloat16_rn(4.0f * u - 2.0f);
  }
}

__global__ void mask_kernel(void* p, MaskFill f) {
  const std::uint64_t n = static_cast<std::uint64_t>(f.Lq) * static_cast<std::uint64_t>(f.Lk);
  for (std::uint64_t e = blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<std::uint64_t>(gridDim.x) * blockDim.x) {
    const auto i = static_cast<std::int64_t>(e / static_cast<std::uint64_t>(f.Lk));
    const auto j = static_cast<std::int64_t>(e % static_cast<std::uint64_t>(f.Lk));
    const float x = mask_value(f, i, j);
    if (f.boolean)
      static_cast<std::uint8_t*>(p)[e] = x != 0.0f ? 1 : 0;
    else
      static_cast<__nv_bfloat16*>(p)[e] = __float2bfloat16_rn(x);
  }
}

}  // namespace

cudaError_t fill_mask(void* p, const MaskFill& f) {
  if (f.content == MaskContent::docs && f.doc_len <= 0) return cudaErrorInvalidValue;
  mask_kernel<<<132 * 16, 256>>>(p, f);
  return cudaGetLastError();
}

cudaError_t fill_uniform_bf16(void* p, std::uint64_t n, std::uint64_t seed) {
  uniform_kernel<<<132 * 16, 256>>>(static_cast<__nv_bfloat16*>(p), n, seed);
  return cudaGetLastError();
}

}  // namespace longattn::bench::gpu
