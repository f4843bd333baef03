// The host cost of one longattn::attention call from C++, the baseline the
// Python binding's overhead is measured against (bench/python/
// call_overhead.py runs this program and then the same calls from Python).
//
// A decode-size problem by default (B 1, Hq 32, Hkv 8, Lq 1, Lk 4096, D 128,
// bfloat16): on the CPU the call runs the work, so the figure is work plus
// overhead, and the Python side pays the same work; on CUDA an untimed call
// only enqueues, and the figure is the host time of `calls` back-to-back
// calls (no sync between them; the stream is drained after the batch,
// outside the timing) divided by `calls`. The median of `batches` batches,
// after one warm-up batch.
//
//   bench_call [--device cpu|cuda] [--lk 4096] [--lq 1] [--d 128] [--dtype bf16]
//              [--calls 100] [--batches 21] [--json]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#if defined(LONGATTN_BENCH_WITH_CUDA)
#include <cuda_runtime.h>
#endif

#include "bench/bench_util.hpp"
#include "bench/cli.hpp"
#include "longattn/longattn.hpp"

namespace {

using longattn::Device;
using longattn::DType;

struct Args {
  std::string device = "cpu";
  std::int64_t b = 1, hq = 32, hkv = 8, lq = 1, lk = 4096, d = 128;
  std::string dtype = "bf16";
  int calls = 100, batches = 21, threads = 0;
  bool json = false;
};

// Device memory for one tensor, or host memory on the CPU.
struct Memory {
  std::vector<std::uint8_t> host;
  void* dev = nullptr;
  Memory(const Memory&) = delete;
  Memory& operator=(const Memory&) = delete;
  Memory(std::size_t bytes, bool cuda) {
    host.assign(bytes, 0);
    if (!cuda) return;
#if defined(LONGATTN_BENCH_WITH_CUDA)
    if (cudaMalloc(&dev, bytes) != cudaSuccess) throw std::runtime_error("cudaMalloc failed");
    cudaMemset(dev, 0, bytes);
#else
    throw std::runtime_error("this build has no CUDA");
#endif
  }
  ~Memory() {
#if defined(LONGATTN_BENCH_WITH_CUDA)
    if (dev) cudaFree(dev);
#endif
  }
  void* data() { return dev ? dev : host.data(); }
};

void drain(bool cuda) {
#if defined(LONGATTN_BENCH_WITH_CUDA)
  if (cuda) cudaDeviceSynchronize();
#else
  (void)cuda;
#endif
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  CLI::App app{"Host time of one longattn::attention call (the Python overhead's baseline)"};
  app.add_option("--device", a.device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--b", a.b, "batch")->check(CLI::Range(1, 64));
  app.add_option("--hq", a.hq, "query heads")->check(CLI::Range(1, 256));
  app.add_option("--hkv", a.hkv, "key/value heads")->check(CLI::Range(1, 256));
  app.add_option("--lq", a.lq, "queries")->check(CLI::Range(1, 1 << 20));
  app.add_option("--lk", a.lk, "keys")->check(CLI::Range(1, 1 << 24));
  app.add_option("--d", a.d, "head dim")->check(CLI::Range(1, 256));
  app.add_option("--dtype", a.dtype, "f32, f16 or bf16")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}));
  app.add_option("--calls", a.calls, "calls a batch")->check(CLI::Range(1, 100000));
  app.add_option("--batches", a.batches, "timed batches")->check(CLI::Range(1, 10000));
  app.add_option("--threads", a.threads, "CPU threads (0 = all)")->check(CLI::Range(0, 1024));
  app.add_flag("--json", a.json, "one JSON line instead of text");
  longattn::bench::parse_or_exit(app, argc, argv);

  const bool cuda = a.device == "cuda";
  const DType t = a.dtype == "f32"   ? DType::float32
                  : a.dtype == "f16" ? DType::float16
                                     : DType::bfloat16;
  const auto es = longattn::dtype_size(t);
  const Device dev = cuda ? Device::cuda : Device::cpu;
  Memory q(static_cast<std::size_t>(a.b * a.hq * a.lq * a.d) * es, cuda);
  Memory k(static_cast<std::size_t>(a.b * a.hkv * a.lk * a.d) * es, cuda);
  Memory v(static_cast<std::size_t>(a.b * a.hkv * a.lk * a.d) * es, cuda);
  Memory o(static_cast<std::size_t>(a.b * a.hq * a.lq * a.d) * es, cuda);
  const auto qv = longattn::contiguous(q.data(), t, {a.b, a.hq, a.lq, a.d}, dev);
  const auto kv = longattn::contiguous(k.data(), t, {a.b, a.hkv, a.lk, a.d}, dev);
  const auto vv = longattn::contiguous(v.data(), t, {a.b, a.hkv, a.lk, a.d}, dev);
  const auto ov = longattn::contiguous(o.data(), t, {a.b, a.hq, a.lq, a.d}, dev);
  longattn::AttentionOptions opt;
  opt.causal = true;
  opt.threads = a.threads;

  std::vector<double> us;
  for (int batch = 0; batch <= a.batches; ++batch) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < a.calls; ++i) longattn::attention(qv, kv, vv, ov, opt);
    const auto t1 = std::chrono::steady_clock::now();
    drain(cuda);
    if (batch > 0)  // batch 0 warms up
      us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count() / a.calls);
  }
  std::sort(us.begin(), us.end());
  const double median = us[us.size() / 2];
  if (a.json)
    std::printf("{\"device\": \"%s\", \"us_per_call\": %.3f, \"min_us\": %.3f}\n", a.device.c_str(),
                median, us.front());
  else
    std::printf(
        "%s B%lld Hq%lld Hkv%lld Lq%lld Lk%lld D%lld %s: %.2f us a call (median of %d "
        "batches of %d; min %.2f)\n",
        a.device.c_str(), static_cast<long long>(a.b), static_cast<long long>(a.hq),
        static_cast<long long>(a.hkv), static_cast<long long>(a.lq), static_cast<long long>(a.lk),
        static_cast<long long>(a.d), a.dtype.c_str(), median, a.batches, a.calls, us.front());
  return 0;
}
