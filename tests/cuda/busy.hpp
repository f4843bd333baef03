// Keeps a stream busy for a while, so that a test can tell whether a call
// returned before the stream reached its work (an untimed call) or waited.
#pragma once

#include <cuda_runtime.h>

namespace lt::gpu {

// Enqueues one single-thread kernel that spins on the GPU's global timer for
// `ms` milliseconds.
cudaError_t busy_wait(cudaStream_t stream, double ms);

}  // namespace lt::gpu
