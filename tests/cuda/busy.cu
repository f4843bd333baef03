#include "busy.hpp"

namespace lt::gpu {
namespace {

__device__ unsigned long long global_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__global__ void busy_kernel(unsigned long long ns) {
  const unsigned long long start = global_ns();
  while (global_ns() - start < ns) __nanosleep(10000);
}

}  // namespace

cudaError_t busy_wait(cudaStream_t stream, double ms) {
  busy_kernel<<<1, 1, 0, stream>>>(static_cast<unsigned long long>(ms * 1e6));
  return cudaGetLastError();
}

}  // namespace lt::gpu
