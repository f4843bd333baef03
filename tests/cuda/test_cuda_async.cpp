// Untimed CUDA calls (a single-pass plan, no report, no progress: enqueued
// on the caller's stream, no host wait). A decode step on a non-blocking
// stream returns before the stream reaches it, is exact after a sync and
// leaves the profile alone; back-to-back calls on one stream, which share
// its split-K workspace, are all exact; so are calls on two streams at once
// and from two threads on one stream, and calls captured into a CUDA graph
// and replayed.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <iterator>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "busy.hpp"
#include "cuda_harness.hpp"

namespace {

using longattn::DType;
using lt::Case;

class CudaAsync : public lt::gpu::CudaTest {
 protected:
  void SetUp() override {
    lt::gpu::CudaTest::SetUp();
    if (IsSkipped()) return;
    const auto dims = lt::gpu::built_head_dims();
    if (std::find(dims.begin(), dims.end(), 128) == dims.end())
      GTEST_SKIP() << "head dim 128 is not built";
  }
};

struct Stream {
  cudaStream_t s = nullptr;
  Stream() { EXPECT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess); }
  ~Stream() { (void)cudaStreamDestroy(s); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
};

// The benchmark's decode shape (Hq 32, Hkv 8, D 128, bfloat16): 8 blocks
// unsplit, so the decode kernel splits the keys and merges (split-K).
Case decode_case(std::int64_t Lk, std::uint64_t seed, std::int64_t Lq = 1) {
  Case c;
  c.B = 1, c.Hq = 32, c.Hkv = 8, c.Lq = Lq, c.Lk = Lk, c.D = 128;
  c.dtype = DType::bfloat16;
  c.causal = Lq > 1;
  c.seed = seed;
  return c;
}

void enqueue(const lt::gpu::DeviceCase& dc, cudaStream_t s) {
  longattn::AttentionOptions o;
  o.cuda_stream = s;
  dc.attention(o);
}

// Inputs and device copies of several cases.
struct Batch {
  std::vector<std::unique_ptr<lt::CaseData>> data;
  std::vector<std::unique_ptr<lt::gpu::DeviceCase>> dev;
  void add(const Case& c) {
    data.push_back(std::make_unique<lt::CaseData>(c));
    dev.push_back(std::make_unique<lt::gpu::DeviceCase>(*data.back()));
  }
  void check_all() {
    for (std::size_t i = 0; i < data.size(); ++i) {
      dev[i]->download();
      const lt::Comparison r = lt::compare(*data[i]);
      EXPECT_TRUE(r.ok) << "call " << i << ": " << r.message;
    }
  }
};

TEST_F(CudaAsync, DecodeReturnsBeforeTheStreamGetsThereAndIsExact) {
  Stream st;
  lt::CaseData d(decode_case(20000, 1));
  lt::gpu::DeviceCase dc(d);
  // Warm-up: module loading and the stream's first workspace allocation may
  // synchronize; later calls must not.
  enqueue(dc, st.s);
  ASSERT_EQ(cudaStreamSynchronize(st.s), cudaSuccess);
  dc.reset_outputs();

  const longattn::DeviceProfile before = longattn::default_profile(longattn::BackendKind::cuda);
  ASSERT_EQ(lt::gpu::busy_wait(st.s, 100), cudaSuccess);
  enqueue(dc, st.s);
  // Had attention() waited on the host, the stream would be idle by now.
  EXPECT_EQ(cudaStreamQuery(st.s), cudaErrorNotReady) << "the untimed call waited on the host";
  (void)cudaGetLastError();
  ASSERT_EQ(cudaStreamSynchronize(st.s), cudaSuccess);
  dc.download();
  const lt::Comparison r = lt::compare(d);
  EXPECT_TRUE(r.ok) << r.message;
  const longattn::DeviceProfile after = longattn::default_profile(longattn::BackendKind::cuda);
  EXPECT_EQ(after.samples, before.samples) << "an untimed call refined the profile";
  EXPECT_EQ(after.gflops, before.gflops);

  // With a report the same call is timed: finished on return, measured.
  dc.reset_outputs();
  ASSERT_EQ(lt::gpu::busy_wait(st.s, 20), cudaSuccess);
  longattn::RunReport report;
  longattn::AttentionOptions o;
  o.cuda_stream = st.s;
  o.report = &report;
  dc.attention(o);
  EXPECT_EQ(cudaStreamQuery(st.s), cudaSuccess) << "a timed call returned before its work ended";
  ASSERT_EQ(report.submissions.size(), 1u);
  EXPECT_GT(report.submissions[0].measured_ms, 0.0);
  dc.download();
  const lt::Comparison r2 = lt::compare(d);
  EXPECT_TRUE(r2.ok) << "timed: " << r2.message;
}

TEST_F(CudaAsync, BackToBackCallsOnOneStreamAreAllExact) {
  // Different key lengths give different split counts, so consecutive calls
  // lay their partials out differently over the stream's one workspace;
  // the Lq = 2 call needs more than the others (the workspace grows while
  // earlier calls are queued). A busy stream keeps all of them queued.
  Stream st;
  Batch b;
  const std::int64_t lks[] = {20000, 5000, 20000, 777, 40000, 12345, 20000, 3000, 20000, 64};
  for (std::size_t i = 0; i < std::size(lks); ++i)
    b.add(decode_case(lks[i], 100 + i, i == 4 ? 2 : 1));
  enqueue(*b.dev[0], st.s);  // warm-up
  ASSERT_EQ(cudaStreamSynchronize(st.s), cudaSuccess);
  b.dev[0]->reset_outputs();
  ASSERT_EQ(lt::gpu::busy_wait(st.s, 20), cudaSuccess);
  for (auto& dc : b.dev) enqueue(*dc, st.s);
  ASSERT_EQ(cudaStreamSynchronize(st.s), cudaSuccess);
  b.check_all();
}

TEST_F(CudaAsync, TwoStreamsAndTwoThreadsOnOneStream) {
  // Threads 0 and 1 share stream a (the workspace's launch lock keeps each
  // call's kernel and merge adjacent on the stream); thread 2 uses stream b.
  // Each thread runs its own cases several times over.
  Stream a, s2;
  const cudaStream_t streams[] = {a.s, a.s, s2.s};
  constexpr int kThreads = 3, kPerThread = 4, kRounds = 5;
  Batch b;
  for (int t = 0; t < kThreads; ++t)
    for (int i = 0; i < kPerThread; ++i)
      b.add(decode_case(i % 2 == 0 ? 20000 : 6000, 200 + 10 * t + i));
  for (const cudaStream_t s : {a.s, s2.s}) {
    enqueue(*b.dev[0], s);  // warm-up of both streams' workspaces
    ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  }
  b.dev[0]->reset_outputs();
  std::mutex mu;
  std::vector<std::string> errors;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      try {
        for (int round = 0; round < kRounds; ++round)
          for (int i = 0; i < kPerThread; ++i) enqueue(*b.dev[t * kPerThread + i], streams[t]);
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(mu);
        errors.push_back("thread " + std::to_string(t) + ": " + e.what());
      }
    });
  for (auto& th : threads) th.join();
  for (const auto& e : errors) ADD_FAILURE() << e;
  ASSERT_EQ(cudaStreamSynchronize(a.s), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(s2.s), cudaSuccess);
  b.check_all();
}

TEST_F(CudaAsync, CapturedIntoAGraphAndReplayed) {
  // Decode (split-K: the partials become graph-owned memory) and a prefill
  // step, captured on one stream after a warm-up there, replayed twice with
  // the outputs poisoned in between: exact each time.
  Stream st;
  Batch b;
  b.add(decode_case(20000, 900));
  b.add(decode_case(3000, 901, 200));
  for (auto& dc : b.dev) enqueue(*dc, st.s);  // warm-up: attributes, workspace
  ASSERT_EQ(cudaStreamSynchronize(st.s), cudaSuccess);
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(st.s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  for (auto& dc : b.dev) enqueue(*dc, st.s);
  ASSERT_EQ(cudaStreamEndCapture(st.s, &graph), cudaSuccess);
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  for (int replay = 0; replay < 2; ++replay) {
    for (auto& dc : b.dev) dc->reset_outputs();
    ASSERT_EQ(cudaGraphLaunch(exec, st.s), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(st.s), cudaSuccess);
    b.check_all();
  }
  (void)cudaGraphExecDestroy(exec);
  (void)cudaGraphDestroy(graph);
}

}  // namespace
