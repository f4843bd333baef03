// Device-side random bfloat16 inputs for the large tests.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace lt::gpu {

// p[i] ~ uniform(-amp, amp) rounded to bfloat16, i < n, from (seed, i) only.
cudaError_t fill_uniform_bf16(void* p, std::uint64_t n, std::uint64_t seed, float amp);

}  // namespace lt::gpu
