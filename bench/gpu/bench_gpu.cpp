// CUDA backend benchmark: the cases (bfloat16, B = 1, Hq = 32,
// Hkv = 8), timed with CUDA events around longattn::attention, warmed up,
// median of repeats, inputs rotated over several buffers so that L2 does not
// flatter. Prints one line per case and writes a CSV that sdpa_bench.py reads
// (it runs PyTorch on the same shapes, by the same methods, and prints the
// combined table).
//
// Two timing methods, the same for both libraries:
// - prefill rows (milliseconds to seconds a call): each call between two
//   events with a host sync after it, so that a budgeted run's report and
//   its measured total belong to one call;
// - decode rows (microseconds a call): the standard back-to-back method.
//   After warm-up, N calls are enqueued back to back on the default stream,
//   each between its own start/end event pair, with no host sync in
//   between; one sync at the end; the median per-call time. A call's time
//   covers what the GPU spent on it, plus any wait for the host to enqueue
//   it when the host is the bottleneck. Decode rows also print the share of
//   the device's copy bandwidth (K and V bytes once over the call's time).
// - decode rows, second method: CUDA graph replay. 20 calls are captured
//   into one graph on a side stream (after warm-up there, so nothing
//   allocates during capture), the graph is replayed back to back with an
//   event pair around each replay, and the median replay time / 20 is the
//   time a call. This is how a decode loop under graphs runs, and it drops
//   the per-launch gaps that dominate microsecond calls.
//
//   bench_gpu [--csv FILE] [--filter SUBSTRING] [--quick] [--suite main|shapes|budget-shapes]
//
// --suite shapes and budget-shapes are issue 12's masks, window, head-dim and
// budget rows (shapes.cpp says what they run).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/bench_util.hpp"
#include "bench/cases.hpp"
#include "bench/cli.hpp"
#include "bench/gpu/gpu_util.hpp"
#include "bench/gpu/shapes.hpp"
#include "longattn/longattn.hpp"

namespace lb = longattn::bench;

namespace {

using longattn::DType;
using longattn::bench::gpu::check;
using longattn::bench::gpu::synced_ms;

struct BenchCase {
  std::string group;  // "square", "long", "oneshot", "decode", "f32"
  std::int64_t D, Lq, Lk;
  bool causal;
  double budget_ms = 0;  // > 0: budgeted run (also timed single-pass for the overhead)
  DType dtype = DType::bfloat16;
};

std::vector<BenchCase> cases() {
  std::vector<BenchCase> c;
  for (std::int64_t D : {64, 128, 256})
    for (std::int64_t L : {4096, 16384})
      for (bool causal : {false, true}) c.push_back({"square", D, L, L, causal});
  for (std::int64_t Lq : {2048, 8192})
    for (std::int64_t Lk : {65536, 131072, 262144}) c.push_back({"long", 128, Lq, Lk, true, 50});
  c.push_back({"oneshot", 128, 131072, 131072, true, 50});
  for (std::int64_t Lk : {4096, 32768, 131072, 1048576}) c.push_back({"decode", 128, 1, Lk, false});
  // The float32 path (CUDA cores), for the record.
  c.push_back({"f32", 128, 4096, 4096, true, 0, DType::float32});
  return c;
}

struct Buffers {
  std::vector<void*> q, k, v, o;
  ~Buffers() {
    for (auto* vec : {&q, &k, &v, &o})
      for (void* p : *vec) (void)cudaFree(p);
  }
};

// Uploads bench_util's reproducible random values (uniform in [-2, 2),
// float32 or bfloat16) to device memory; cheap next to the runs.
void fill_random(void* p, std::size_t n, std::uint64_t seed, DType t) {
  const lb::Buffer h = lb::random_buffer(t, static_cast<std::int64_t>(n), seed);
  check(cudaMemcpy(p, h.bytes.data(), h.bytes.size(), cudaMemcpyHostToDevice), "upload");
}

struct Result {
  double ms = 0;
  longattn::RunReport report;
};

// One longattn call on buffer set `s` and `stream` (nullptr: the default
// stream). Without a budget and a report the call is untimed inside the
// library: only enqueued.
void run_once(const BenchCase& bc, double budget_ms, Buffers& buf, int s, longattn::RunReport* rep,
              cudaStream_t stream = nullptr) {
  const std::int64_t Hq = 32, Hkv = 8;
  const auto dev = longattn::Device::cuda;
  const auto q = longattn::contiguous(buf.q[s], bc.dtype, {1, Hq, bc.Lq, bc.D}, dev);
  const auto k = longattn::contiguous(buf.k[s], bc.dtype, {1, Hkv, bc.Lk, bc.D}, dev);
  const auto v = longattn::contiguous(buf.v[s], bc.dtype, {1, Hkv, bc.Lk, bc.D}, dev);
  const auto o = longattn::contiguous(buf.o[s], bc.dtype, {1, Hq, bc.Lq, bc.D}, dev);
  longattn::AttentionOptions opt;
  opt.causal = bc.causal;
  opt.backend = longattn::BackendKind::cuda;
  opt.report = rep;
  opt.cuda_stream = stream;
  if (budget_ms > 0) {
    opt.policy.budget_ms = budget_ms;
  } else {
    opt.policy.budget_ms = 0;
    opt.policy.chunk_threshold_keys = 0;
  }
  longattn::attention(q, k, v, o, opt);
}

// fn(i) for i < reps enqueued back to back on `stream`, each between its
// own event pair, one host sync at the end: the median ms a call.
template <typename Fn>
double median_pair_ms(int reps, cudaStream_t stream, Fn&& fn) {
  std::vector<cudaEvent_t> ev(2 * static_cast<std::size_t>(reps));
  for (auto& e : ev) check(cudaEventCreate(&e), "event");
  for (int i = 0; i < reps; ++i) {
    check(cudaEventRecord(ev[2 * i], stream), "record");
    fn(i);
    check(cudaEventRecord(ev[2 * i + 1], stream), "record");
  }
  check(cudaStreamSynchronize(stream), "sync");
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    float ms = 0;
    check(cudaEventElapsedTime(&ms, ev[2 * i], ev[2 * i + 1]), "elapsed");
    times.push_back(ms);
  }
  for (auto& e : ev) (void)cudaEventDestroy(e);
  return lb::median(std::move(times));
}

// The back-to-back method (header comment), for any enqueueing call `fn(i)`:
// calls until ~1.5 s of device time, 20 to 400 of them.
template <typename Fn>
double time_back_to_back(Fn&& fn) {
  for (int i = 0; i < 3; ++i) fn(i);  // warm-up
  const double est = synced_ms([&] {
                       for (int i = 0; i < 5; ++i) fn(i);
                     }) /
                     5;
  const int reps = std::clamp(static_cast<int>(1500.0 / std::max(est, 1e-3)), 20, 400);
  return median_pair_ms(reps, nullptr, fn);
}

// The graph method (header comment) for an enqueueing call `fn(i, stream)`.
double time_graph(const std::function<void(int, cudaStream_t)>& fn) {
  constexpr int kCalls = 20;
  cudaStream_t st = nullptr;
  check(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), "cudaStreamCreate");
  for (int i = 0; i < 3; ++i) fn(i, st);  // warm-up on this stream: its workspace, attributes
  check(cudaStreamSynchronize(st), "sync");
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  check(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
  for (int i = 0; i < kCalls; ++i) fn(i, st);
  check(cudaStreamEndCapture(st, &graph), "cudaStreamEndCapture");
  check(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate");
  for (int i = 0; i < 2; ++i) check(cudaGraphLaunch(exec, st), "cudaGraphLaunch");
  check(cudaStreamSynchronize(st), "sync");
  const double ms =
      median_pair_ms(30, st, [&](int) { check(cudaGraphLaunch(exec, st), "cudaGraphLaunch"); });
  (void)cudaGraphExecDestroy(exec);
  (void)cudaGraphDestroy(graph);
  (void)cudaStreamDestroy(st);
  return ms / kCalls;
}

// Device copy bandwidth, read + write bytes over time (1 GiB,
// cudaMemcpyAsync device to device, back to back): the decode ceiling.
double copy_gbps() {
  const std::size_t n = std::size_t{1} << 30;
  void *x = nullptr, *y = nullptr;
  check(cudaMalloc(&x, n), "cudaMalloc");
  check(cudaMalloc(&y, n), "cudaMalloc");
  check(cudaMemset(x, 1, n), "cudaMemset");
  const double ms = time_back_to_back(
      [&](int) { check(cudaMemcpyAsync(y, x, n, cudaMemcpyDeviceToDevice), "cudaMemcpyAsync"); });
  (void)cudaFree(x);
  (void)cudaFree(y);
  return 2.0 * static_cast<double>(n) / ms * 1e-6;
}

// Prefill rows: each call between two events, host sync after each.
Result time_case(const BenchCase& bc, double budget_ms, int sets, Buffers& buf) {
  // Warm-up (also estimates the time per call).
  const double est = synced_ms([&] { run_once(bc, budget_ms, buf, 0, nullptr); });
  const int reps = std::clamp(static_cast<int>(1500.0 / std::max(est, 0.01)), 3, 50);
  std::vector<double> times;
  Result r;
  for (int i = 0; i < reps; ++i) {
    longattn::RunReport rep;
    times.push_back(synced_ms([&] { run_once(bc, budget_ms, buf, i % sets, &rep); }));
    if (i == reps - 1) r.report = rep;
  }
  r.ms = lb::median(std::move(times));
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  std::string csv_path, filter, suite = "main";
  bool quick = false;
  CLI::App app{"bench_gpu: the CUDA backend on the issue's cases (sdpa_bench.py adds PyTorch)"};
  app.add_option("--csv", csv_path,
                 "write the rows as CSV here (sdpa_bench.py or shapes_peers.py reads it)");
  app.add_option("--filter", filter, "only cases whose name contains this");
  app.add_flag("--quick", quick,
               "main: skip the one-shot row and keys past 131072; shapes: skip the 64K rows; "
               "budget-shapes: 16K shapes");
  app.add_option("--suite", suite,
                 "main: the prefill and decode table; shapes: masks, window and head dims "
                 "(issue 12, shapes.cpp); budget-shapes: their budget table")
      ->check(CLI::IsMember({"main", "shapes", "budget-shapes"}));
  longattn::bench::parse_or_exit(app, argc, argv);
  if (suite != "main") {
    const longattn::bench::gpu::SuiteArgs args{csv_path, filter, quick};
    return suite == "shapes" ? longattn::bench::gpu::run_shapes_suite(args)
                             : longattn::bench::gpu::run_budget_shapes_suite(args);
  }
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  std::printf("device: %s, %d SMs, L2 %d MB\n", prop.name, prop.multiProcessorCount,
              prop.l2CacheSize >> 20);
  const double copy = copy_gbps();
  std::printf("copy ceiling: %.0f GB/s (1 GiB device to device, back to back)\n", copy);
  std::ofstream csv;
  if (!csv_path.empty()) {
    csv.open(csv_path);
    csv << "group,D,Lq,Lk,causal,ms,tflops,gbps,budget_ms,budget_total_ms,submissions,"
           "worst_after_first_ms,overhead_pct,dispatches,query_rows,chunk_keys,replans,timing,"
           "copy_gbps,graph_ms,flops\n";
  }
  const std::int64_t Hq = 32, Hkv = 8;
  for (const BenchCase& bc : cases()) {
    char name[128];
    std::snprintf(name, sizeof name, "%s d%lld q%lld k%lld %s", bc.group.c_str(),
                  static_cast<long long>(bc.D), static_cast<long long>(bc.Lq),
                  static_cast<long long>(bc.Lk), bc.causal ? "causal" : "full");
    if (!filter.empty() && std::string(name).find(filter) == std::string::npos) continue;
    if (quick && (bc.group == "oneshot" || bc.Lk > 131072)) continue;
    try {
      const std::size_t qn = static_cast<std::size_t>(Hq * bc.Lq * bc.D),
                        kn = static_cast<std::size_t>(Hkv * bc.Lk * bc.D);
      const std::size_t es = longattn::dtype_size(bc.dtype);
      const double set_bytes = static_cast<double>(es * (2 * qn + 2 * kn));
      const int sets = std::clamp(static_cast<int>(std::ceil(256e6 / set_bytes)), 1, 4);
      Buffers buf;
      for (int s = 0; s < sets; ++s) {
        for (auto [vec, n] : {std::pair{&buf.q, qn}, {&buf.k, kn}, {&buf.v, kn}, {&buf.o, qn}}) {
          void* p = nullptr;
          check(cudaMalloc(&p, n * es), "cudaMalloc");
          vec->push_back(p);
        }
        fill_random(buf.q[s], qn, 1 + 7 * s, bc.dtype);
        fill_random(buf.k[s], kn, 2 + 7 * s, bc.dtype);
        fill_random(buf.v[s], kn, 3 + 7 * s, bc.dtype);
      }
      const bool decode = bc.group == "decode";
      Result single;
      double graph_ms = 0;
      if (decode) {
        single.ms = time_back_to_back([&](int i) { run_once(bc, 0, buf, i % sets, nullptr); });
        graph_ms = time_graph(
            [&](int i, cudaStream_t st) { run_once(bc, 0, buf, i % sets, nullptr, st); });
      } else {
        single = time_case(bc, 0, sets, buf);
      }
      const double flops = longattn::attention_flops(1, Hq, bc.Lq, bc.Lk, bc.D, bc.D, bc.causal);
      const double tflops = flops / single.ms * 1e-9;
      const double gbps =
          2.0 * static_cast<double>(kn * es) / single.ms * 1e-6;  // K and V bytes once
      double btotal = 0, worst = 0, overhead = 0;
      std::size_t nsub = 0, ndisp = 0;
      std::int64_t qrows = 0, ckeys = 0;
      int replans = 0;
      if (bc.budget_ms > 0) {
        const Result bud = time_case(bc, bc.budget_ms, sets, buf);
        btotal = bud.ms;
        nsub = bud.report.submissions.size();
        for (std::size_t i = 1; i < nsub; ++i)
          worst = std::max(worst, bud.report.submissions[i].measured_ms);
        overhead = (bud.ms / single.ms - 1.0) * 100.0;
        ndisp = bud.report.plan.num_dispatches();
        qrows = bud.report.plan.query_rows;
        ckeys = bud.report.plan.chunk_keys;
        replans = bud.report.replans;
      }
      std::printf("%-36s %10.3f ms %8.1f TFLOP/s %8.1f GB/s", name, single.ms, tflops, gbps);
      if (decode) {
        const double graph_gbps = 2.0 * static_cast<double>(kn * es) / graph_ms * 1e-6;
        std::printf(
            " (%.0f%% of copy, back-to-back %.1f us a call; graph %.1f us, %.0f GB/s, %.0f%%)",
            100.0 * gbps / copy, single.ms * 1e3, graph_ms * 1e3, graph_gbps,
            100.0 * graph_gbps / copy);
      }
      if (bc.budget_ms > 0)
        std::printf(
            "  | budget %.0f ms: %.3f ms total, %zu submissions, worst after first %.1f ms, "
            "overhead %+.1f%% "
            "(plan: %zu dispatches, %lld query rows x %lld keys, %d replans)",
            bc.budget_ms, btotal, nsub, worst, overhead, ndisp, static_cast<long long>(qrows),
            static_cast<long long>(ckeys), replans);
      std::printf("\n");
      std::fflush(stdout);
      if (csv.is_open())
        csv << bc.group << ',' << bc.D << ',' << bc.Lq << ',' << bc.Lk << ',' << (bc.causal ? 1 : 0)
            << ',' << single.ms << ',' << tflops << ',' << gbps << ',' << bc.budget_ms << ','
            << btotal << ',' << nsub << ',' << worst << ',' << overhead << ',' << ndisp << ','
            << qrows << ',' << ckeys << ',' << replans << ',' << (decode ? "b2b" : "sync") << ','
            << copy << ',' << graph_ms << ',' << flops << '\n';
    } catch (const std::exception& e) {
      std::printf("%-36s FAILED: %s\n", name, e.what());
      (void)cudaGetLastError();
    }
  }
  return 0;
}
