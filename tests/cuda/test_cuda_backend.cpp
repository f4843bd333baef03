// The CUDA Backend itself: availability, errors (out of memory names the call
// and the bytes, head dims wider than the build), timing without host waits, and the
// element-wise load path for strides that 16-byte loads cannot serve.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "core/backend.hpp"
#include "cuda_harness.hpp"

namespace {

using longattn::DType;
using lt::Case;
using lt::gpu::CudaTest;

class CudaBackend : public CudaTest {};

TEST(CudaBuild, HeadDimsAreListed) {
  // Runs without a GPU too: the build itself must list what it instantiated.
  EXPECT_FALSE(longattn::core::cuda_head_dims().empty());
}

// Narrower heads run padded on CUDA, Dv may differ from D; a head wider
// than the widest kernel this build instantiated is refused at validation,
// naming the argument and the built widths (planning reads no data, so no
// GPU is needed). Runs without a GPU. A build with width 256 takes every head
// the API accepts.
TEST(CudaBuild, RefusesHeadsWiderThanItsWidestKernel) {
  const auto built = longattn::core::cuda_head_dims();
  if (built.back() >= 256) GTEST_SKIP() << "this build has width 256: every head dim fits";
  const std::int64_t wide = built.back() + 1;
  auto view = [](std::int64_t h, std::int64_t l, std::int64_t d) {
    auto t = longattn::contiguous(nullptr, DType::bfloat16, {1, h, l, d});
    t.device = longattn::Device::cuda;
    return t;
  };
  const auto q = view(8, 16, 64), k = view(2, 64, 64), v = view(2, 64, wide), o = view(8, 16, wide);
  try {
    (void)longattn::plan_attention(q, k, v, o);
    FAIL() << "expected Unsupported";
  } catch (const longattn::Unsupported& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind("[longattn::plan_attention] v.shape[3] = " + std::to_string(wide) +
                            " is wider than every CUDA",
                        0),
              0u)
        << msg;
    EXPECT_NE(msg.find("(built: " + std::to_string(built.front())), std::string::npos) << msg;
  }
}

TEST_F(CudaBackend, AvailableAndNamed) {
  EXPECT_TRUE(longattn::core::cuda_available());
  auto b = longattn::core::make_cuda_backend({});
  EXPECT_EQ(b->name(), "cuda");
  EXPECT_FALSE(b->device_name().empty());
  std::printf("[cuda] %s\n", b->device_name().c_str());
}

TEST_F(CudaBackend, OutOfMemoryNamesTheCallAndBytes) {
  auto b = longattn::core::make_cuda_backend({});
  longattn::core::Problem p;
  p.B = 1, p.Hq = 64, p.Hkv = 64, p.Lq = 1, p.Lk = 1, p.D = 128, p.Dv = 128;
  p.dtype = DType::bfloat16;
  p.device = longattn::Device::cuda;
  try {
    b->alloc_state(p, std::int64_t{1} << 32);  // 64 * 2^32 * 130 * 4 bytes: far beyond any card
    FAIL() << "expected OutOfMemory";
  } catch (const longattn::OutOfMemory& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("cudaMalloc("), std::string::npos) << what;
    EXPECT_NE(what.find("bytes"), std::string::npos) << what;
  }
  // The backend still works afterwards.
  auto s = b->alloc_state(p, 16);
  b->release_state(s);
}

// A head dim without its own kernel width (72: MLX's) runs padded to the
// next one. (tests/cuda/test_cuda_shapes.cpp covers every kernel path.)
TEST_F(CudaBackend, HeadDimWithoutItsOwnWidth) {
  Case c;
  c.Hq = 2, c.Hkv = 1, c.Lq = 70, c.Lk = 130, c.D = 72, c.Dv = 72;
  c.dtype = DType::bfloat16;
  lt::CaseData d(c);
  lt::gpu::run_cuda(d);
  const lt::Comparison cmp = lt::compare(d);
  EXPECT_TRUE(cmp.ok) << cmp.message;
}

TEST_F(CudaBackend, TimesSubmissionsWithoutHostWait) {
  Case c;
  c.B = 1, c.Hq = 8, c.Hkv = 2, c.Lq = 256, c.Lk = 1024, c.D = 128;
  c.dtype = DType::bfloat16;
  c.causal = true;
  lt::CaseData d(c);
  for (bool wait : {true, false}) {
    longattn::AttentionOptions o;
    o.policy = lt::chunked_policy(256, 128);
    o.host_wait = wait;
    longattn::RunReport r;
    o.report = &r;
    d.reset_outputs();
    lt::gpu::run_cuda(d, o);
    const lt::Comparison cmp = lt::compare(d);
    EXPECT_TRUE(cmp.ok) << cmp.message;
    ASSERT_GT(r.submissions.size(), 1u);
    for (const auto& s : r.submissions) EXPECT_GT(s.measured_ms, 0.0) << "host_wait " << wait;
  }
}

// q, k, v with the head dim at stride 2 (every other element), not 16-byte
// loadable: both kernels must take the element-wise path.
TEST_F(CudaBackend, ElementStridedLayouts) {
  for (DType t : {DType::bfloat16, DType::float16, DType::float32})
    for (std::int64_t Lq : {1, 70}) {
      const std::int64_t B = 1, Hq = 4, Hkv = 2, Lk = 90, D = 64;
      Case c;
      c.B = B, c.Hq = Hq, c.Hkv = Hkv, c.Lq = Lq, c.Lk = Lk, c.D = D;
      c.dtype = t;
      c.causal = true;
      lt::CaseData d(c);
      // Build stride-2 copies of q, k, v on the device from the case's data.
      auto strided = [&](const lt::Buffer& b, std::int64_t H, std::int64_t L) {
        const std::size_t es = t == DType::float32 ? 4 : 2;
        std::vector<std::byte> host(static_cast<std::size_t>(B * H * L * D * 2) * es, std::byte{0});
        for (std::int64_t i = 0; i < B * H * L; ++i)
          for (std::int64_t x = 0; x < D; ++x) {
            const std::int64_t bb = i / (H * L), hh = (i / L) % H, ll = i % L;
            const std::int64_t src = bb * b.view.strides[0] + hh * b.view.strides[1] +
                                     ll * b.view.strides[2] + x * b.view.strides[3];
            std::memcpy(
                host.data() + static_cast<std::size_t>(i * D * 2 + 2 * x) * es,
                static_cast<const std::byte*>(b.view.data) + static_cast<std::size_t>(src) * es,
                es);
          }
        void* p = nullptr;
        EXPECT_EQ(cudaMalloc(&p, host.size()), cudaSuccess);
        EXPECT_EQ(cudaMemcpy(p, host.data(), host.size(), cudaMemcpyHostToDevice), cudaSuccess);
        longattn::TensorView v;
        v.data = p, v.dtype = t, v.rank = 4, v.shape = {B, H, L, D};
        v.strides = {H * L * D * 2, L * D * 2, D * 2, 2};
        v.device = longattn::Device::cuda;
        return v;
      };
      const auto q = strided(d.q, Hq, Lq), k = strided(d.k, Hkv, Lk), v = strided(d.v, Hkv, Lk);
      void* out = nullptr;
      ASSERT_EQ(cudaMalloc(&out, d.out.bytes.size()), cudaSuccess);
      ASSERT_EQ(cudaMemcpy(out, d.out.bytes.data(), d.out.bytes.size(), cudaMemcpyHostToDevice),
                cudaSuccess);
      longattn::AttentionOptions o;
      o.backend = longattn::BackendKind::cuda;
      o.causal = true;
      o.scale = c.effective_scale();
      longattn::attention(q, k, v, d.out.view_at(out, longattn::Device::cuda), o);
      ASSERT_EQ(cudaMemcpy(d.out.bytes.data(), out, d.out.bytes.size(), cudaMemcpyDeviceToHost),
                cudaSuccess);
      for (void* p : {q.data, k.data, v.data, out}) (void)cudaFree(p);
      const auto m = lt::metric(d.out.read(), d.expected().o, c.dv());
      EXPECT_LE(m.err, lt::tolerance(t))
          << c.name() << " " << m.describe_worst(d.out.read(), d.expected().o);
    }
}

}  // namespace

// calibrate() on the GPU: inputs in device memory, a rate for every variant
// of a built head dim, the card's name in the profile.
TEST_F(CudaBackend, CalibrateMeasuresTheDevice) {
  const std::vector<std::int64_t> dims = lt::gpu::built_head_dims();
  if (dims.empty()) GTEST_SKIP() << "no CUDA head dim built";
  longattn::CalibrateOptions c;
  c.backend = longattn::BackendKind::cuda;
  c.dtypes = {DType::bfloat16};
  c.head_dims = {dims.front()};
  c.heads = 8, c.q_len = 256, c.k_len = 1024, c.reps = 1;
  const longattn::DeviceProfile p = longattn::calibrate(c);
  EXPECT_EQ(p.backend, "cuda");
  EXPECT_NE(p.device_name.find("NVIDIA"), std::string::npos) << p.device_name;
  for (auto [causal, masked] : {std::pair{false, false}, {true, false}, {false, true}}) {
    const std::string key =
        longattn::DeviceProfile::rate_key(DType::bfloat16, dims.front(), causal, masked);
    ASSERT_TRUE(p.gflops.count(key)) << key;
    EXPECT_GT(p.gflops.at(key), 1000) << key << ": a GPU does more than 1 TFLOP/s here";
  }
}
