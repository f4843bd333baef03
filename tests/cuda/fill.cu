// Device-side input generation for the large tests (filling tens of GB on
// the host would dominate the test's time): a counter-based hash, uniform in
// [-amp, amp], rounded to bfloat16.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "fill.hpp"

namespace lt::gpu {
namespace {

__device__ __forceinline__ std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

__global__ void fill_kernel(__nv_bfloat16* p, std::uint64_t n, std::uint64_t seed, float amp) {
  for (std::uint64_t i = blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::uint64_t>(gridDim.x) * blockDim.x) {
    const double u = static_cast<double>(mix(i * 0x9e3779b97f4a7c15ull + seed) >> 11) * 0x1.0p-53;
    p[i] = __float2bfloat16_rn(static_cast<float>((2.0 * u - 1.0) * amp));
  }
}

}  // namespace

cudaError_t fill_uniform_bf16(void* p, std::uint64_t n, std::uint64_t seed, float amp) {
  fill_kernel<<<1024, 256>>>(static_cast<__nv_bfloat16*>(p), n, seed, amp);
  return cudaGetLastError();
}

}  // namespace lt::gpu
