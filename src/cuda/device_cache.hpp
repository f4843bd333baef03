// What the CUDA backend keeps for the life of the process: each device's
// properties (attention() makes a backend per call, and
// cudaGetDeviceProperties per call would dominate a decode step) and each
// stream's split-K workspace (so a call never synchronizes to reuse one).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>

namespace longattn::cuda {

// cudaMalloc with typed errors: OutOfMemory when the device is full,
// BackendError otherwise, both naming the bytes and what they were for.
void* device_alloc(std::size_t bytes, const char* what);

struct DeviceInfo {
  std::string name;
  int sms = 1;
  bool hopper = false;  // compute capability 9.0 and this build has sm_90a code
};
// Looked up once per device; thread-safe.
DeviceInfo device_info(int device);

// The split-K partials of one stream. Work on one stream runs in order, so
// the next call on that stream may reuse the memory without waiting for the
// last one: no cudaStreamSynchronize per call. A backend holds its stream's
// workspace (shared_ptr) for its lifetime; one that grows or is evicted from
// the cache is freed when its last holder lets go, and cudaFree waits for
// the device first, so kernels still reading it finish.
struct StreamWorkspace {
  // Held from a dispatch's first launch to its merge launch: two host
  // threads on one stream must not interleave their kernels in between.
  std::mutex launch;
  float* ptr = nullptr;
  std::size_t bytes = 0;
  // Set for graph-owned memory (see stream_workspace): freed by
  // cudaFreeAsync on this stream, inside the capture.
  cudaStream_t graph_stream = nullptr;
  StreamWorkspace() = default;
  StreamWorkspace(const StreamWorkspace&) = delete;
  StreamWorkspace& operator=(const StreamWorkspace&) = delete;
  ~StreamWorkspace();
};

// Streams whose workspace is kept; the least recently used beyond this is
// dropped (freed once no backend holds it), so an application that makes a
// stream per request does not accumulate memory. Decode needs ~0.5 MB a
// stream; an application cycling through more streams than this pays a
// cudaMalloc and a synchronizing cudaFree per split-K call.
constexpr std::size_t kCachedStreams = 32;

// The workspace of (device, stream), at least `bytes` large (grown to a
// power of 2, at least 1 MB). While the stream captures a CUDA graph the
// cache cannot serve (cudaStreamGetId is refused then, and a graph may be
// replayed on any stream): the workspace is then a stream-ordered
// allocation, which capture turns into memory nodes that the graph owns,
// freed the same way when its last holder lets go.
std::shared_ptr<StreamWorkspace> stream_workspace(int device, cudaStream_t stream,
                                                  std::size_t bytes);

// Resident blocks per SM of a kernel, from `query` (a LauncherEntry's
// occupancy function), asked once per (device, key).
int blocks_per_sm(int device, int key, int (*query)());

}  // namespace longattn::cuda
