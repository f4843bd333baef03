// See device_cache.hpp.
#include "cuda/device_cache.hpp"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "cuda/check.hpp"

namespace longattn::cuda {

void* device_alloc(std::size_t bytes, const char* what) {
  void* ptr = nullptr;
  const cudaError_t e = cudaMalloc(&ptr, bytes);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // clear the (non-sticky) error so later calls work
    const std::string call = "cudaMalloc(" + std::to_string(bytes) + " bytes) for " + what;
    check_cuda(e, call.c_str());
  }
  return ptr;
}

StreamWorkspace::~StreamWorkspace() {
  if (ptr == nullptr) return;  // errors are dropped: destructors must not throw
  if (graph_stream != nullptr)
    (void)cudaFreeAsync(ptr, graph_stream);
  else
    (void)cudaFree(ptr);
}

namespace {

struct CachedWorkspace {
  std::shared_ptr<StreamWorkspace> ws;
  std::uint64_t last_use = 0;
};

// Workspaces are keyed by (device, stream id): CUDA never reuses a stream id,
// unlike a stream handle, so the pending work of a destroyed stream never
// shares memory with a new stream that got the same handle.
struct Registry {
  std::mutex mu;
  std::map<int, DeviceInfo> devices;
  std::map<std::pair<int, unsigned long long>, CachedWorkspace> workspaces;
  std::map<std::pair<int, int>, int> occupancy;  // (device, key) -> blocks per SM
  std::uint64_t uses = 0;
};
// Never destroyed: a static destructor would call cudaFree after the CUDA
// runtime has shut down.
Registry& registry() {
  static auto* r = new Registry;
  return *r;
}

}  // namespace

DeviceInfo device_info(int device) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.devices.find(device);
  if (it != r.devices.end()) return it->second;
  cudaDeviceProp prop{};
  check_cuda(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  DeviceInfo info;
  info.name = std::string(prop.name) + " (device " + std::to_string(device) + ", " +
              std::to_string(prop.multiProcessorCount) + " SMs)";
  info.sms = prop.multiProcessorCount;
#ifdef LONGATTN_CUDA_SM90A
  info.hopper = prop.major == 9 && prop.minor == 0;
#endif
  return r.devices.emplace(device, std::move(info)).first->second;
}

std::shared_ptr<StreamWorkspace> stream_workspace(int device, cudaStream_t stream,
                                                  std::size_t bytes) {
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  check_cuda(cudaStreamIsCapturing(stream, &capture), "cudaStreamIsCapturing");
  if (capture == cudaStreamCaptureStatusActive) {
    auto ws = std::make_shared<StreamWorkspace>();
    void* ptr = nullptr;
    check_cuda(cudaMallocAsync(&ptr, bytes, stream), "cudaMallocAsync(split-K workspace)");
    ws->ptr = static_cast<float*>(ptr);
    ws->bytes = bytes;
    ws->graph_stream = stream;
    return ws;
  }
  unsigned long long id = 0;
  check_cuda(cudaStreamGetId(stream, &id), "cudaStreamGetId");
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  CachedWorkspace& c = r.workspaces[{device, id}];
  c.last_use = ++r.uses;
  if (!c.ws || c.ws->bytes < bytes) {
    auto ws = std::make_shared<StreamWorkspace>();
    ws->bytes = std::max(std::bit_ceil(bytes), std::size_t{1} << 20);
    ws->ptr = static_cast<float*>(device_alloc(ws->bytes, "the split-K workspace"));
    c.ws = std::move(ws);  // the smaller one goes when its last holder does
  }
  std::shared_ptr<StreamWorkspace> ws = c.ws;
  if (r.workspaces.size() > kCachedStreams) {
    auto lru = std::min_element(
        r.workspaces.begin(), r.workspaces.end(),
        [](const auto& a, const auto& b) { return a.second.last_use < b.second.last_use; });
    r.workspaces.erase(lru);
  }
  return ws;
}

int blocks_per_sm(int device, int key, int (*query)()) {
  Registry& r = registry();
  {
    std::lock_guard<std::mutex> lock(r.mu);
    auto it = r.occupancy.find({device, key});
    if (it != r.occupancy.end()) return it->second;
  }
  const int n = query();  // outside the lock: it calls into the CUDA runtime
  std::lock_guard<std::mutex> lock(r.mu);
  return r.occupancy.emplace(std::pair{device, key}, n).first->second;
}

}  // namespace longattn::cuda
