// CUDA head dims and logit soft-cap (issue 12) against the float64 reference:
// every D and Dv from 1 to 256, Dv != D (DeepSeek's MLA 192 / 128), the odd
// widths that run padded on the next larger instantiation (1, 32, 72, 100,
// 130, 255), lengths that break tiles, GQA, decode, chunked == single pass,
// misaligned and strided views; and the soft-cap on every kernel path (the
// vector kernel, Hopper prefill and packed decode, mma.sync) with causal,
// windows, masks and sinks. Each case runs on each kernel choice ("auto",
// "mma"), and the run report must name the kernel the shape takes there
// (KernelChoiceTest::expected_kernel): on Hopper, heads narrower than a
// Hopper width run padded on the Hopper kernel.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <iostream>
#include <string>
#include <tuple>
#include <vector>

#include "cuda_harness.hpp"
#include "test_common.hpp"

namespace {

using longattn::DType;
using lt::Case;
using lt::Layout;
using lt::MaskKind;

const DType kDtypes[] = {DType::float32, DType::float16, DType::bfloat16};

struct HeadShape {
  std::int64_t D, Dv;
};

// Shapes of models and shapes that break the kernels' column blocks: MLA,
// MLX's fused 72, small and odd widths, one past an instantiation, the
// largest odd one, and Dv wider than D.
const HeadShape kOddShapes[] = {{192, 128}, {72, 72},   {32, 32},   {1, 1},
                                {100, 100}, {130, 130}, {255, 255}, {48, 200}};

// The head dim a (D, Dv) shape runs at on CUDA: the smallest built head dim
// not below either (issue 12: a shape without its own instantiation runs on
// the next larger one, padded inside the kernel), or 0 when this build has
// none that wide.
std::int64_t width_of(std::int64_t D, std::int64_t Dv) {
  std::int64_t w = 0;
  for (std::int64_t b : lt::gpu::built_head_dims())
    if (b >= std::max(D, Dv) && (w == 0 || b < w)) w = b;
  return w;
}

// The first of `preferred` this build instantiated, or with no preference
// left, any built head dim (0 only for `strict`, when none of them is built).
std::int64_t first_built(std::initializer_list<std::int64_t> preferred, bool strict = false) {
  const auto built = lt::gpu::built_head_dims();
  for (std::int64_t d : preferred)
    if (std::find(built.begin(), built.end(), d) != built.end()) return d;
  return strict || built.empty() ? 0 : built.front();
}

// The data of c. A row of fewer than 8 output values can have its largest
// |O|, the metric's scale for the row, cancel to ~1e-4, where the float32
// sums of a few hundred terms of size 1 already exceed the table's 1e-5
// relative: there v is drawn as |v| + 0.5, so O (a weighted mean of v) stays
// above 0.5 and a wrong softmax weight still moves it by O(1).
lt::CaseData case_data(const Case& c) {
  lt::CaseData d(c);
  if (c.dv() >= 8) return d;
  for (std::int64_t b = 0; b < c.B; ++b)
    for (std::int64_t h = 0; h < c.Hkv; ++h)
      for (std::int64_t j = 0; j < c.Lk; ++j)
        for (std::int64_t x = 0; x < c.dv(); ++x) {
          const double v =
              d.in.v[static_cast<std::size_t>(((b * c.Hkv + h) * c.Lk + j) * c.dv() + x)];
          d.set_v(b, h, j, x, std::abs(v) + 0.5);
        }
  return d;
}

class CudaShapes : public lt::gpu::KernelChoiceTest {
 protected:
  // Says how many shapes the build refused (checked, not run), once a test.
  void TearDown() override {
    if (refused_ > 0)
      std::cout << "[   NOTE   ] " << refused_
                << " shapes refused, wider than every built head dim (LONGATTN_CUDA_HEAD_DIMS)\n";
    KernelChoiceTest::TearDown();
  }

  // Runs c as one single-pass dispatch and checks it against the reference
  // and the kernel it must take. When this build has no head dim as wide as
  // max(D, Dv), expects the call to be refused (Unsupported) with a message
  // that names the built head dims instead.
  void check_shape(const Case& c, longattn::AttentionOptions base = {}) {
    lt::CaseData d = case_data(c);
    base.policy = lt::single_pass_policy();
    if (width_of(c.D, c.dv()) == 0) {
      try {
        lt::gpu::run_cuda(d, base);
        ADD_FAILURE() << c.name() << ": ran, but no built head dim is that wide";
      } catch (const longattn::Unsupported& e) {
        const std::string msg = e.what();
        for (std::int64_t w : lt::gpu::built_head_dims())
          EXPECT_NE(msg.find(std::to_string(w)), std::string::npos)
              << c.name() << ": the refusal should name built head dim " << w << ": " << msg;
      }
      ++refused_;
      return;
    }
    const std::vector<std::string> kernels = lt::gpu::run_cuda_kernels(d, base);
    const lt::Comparison r = lt::gpu::compare_sampled(d);
    EXPECT_TRUE(r.ok) << r.message;
    EXPECT_EQ(kernels, std::vector<std::string>{expected_kernel(c)}) << c.name();
  }

  // Runs c single pass and under each chunked policy: every run against the
  // reference, each chunked output within the dtype's tolerance of the
  // single pass (same kernels, another key order) and its LSE within the
  // LSE tolerance.
  void check_chunked(const Case& c,
                     std::initializer_list<std::pair<std::int64_t, std::int64_t>> policies) {
    if (width_of(c.D, c.dv()) == 0) {
      check_shape(c);  // the refusal
      return;
    }
    lt::CaseData d = case_data(c);
    longattn::AttentionOptions o;
    o.policy = lt::single_pass_policy();
    lt::gpu::run_cuda(d, o);
    lt::Comparison r = lt::gpu::compare_sampled(d);
    EXPECT_TRUE(r.ok) << "single pass: " << r.message;
    const std::vector<double> o1 = d.out.read(), lse1 = d.lse.read();
    for (const auto& [keys, rows] : policies) {
      d.reset_outputs();
      o.policy = lt::chunked_policy(keys, rows);
      longattn::RunReport report;
      o.report = &report;
      lt::gpu::run_cuda(d, o);
      r = lt::gpu::compare_sampled(d);
      EXPECT_TRUE(r.ok) << "chunks of " << keys << " x " << rows << ": " << r.message;
      EXPECT_TRUE(report.plan.chunked) << c.name();
      EXPECT_LE(lt::metric(d.out.read(), o1, c.dv()).err, lt::tolerance(c.dtype))
          << c.name() << " chunks of " << keys << " x " << rows;
      EXPECT_LE(lt::lse_metric(d.lse.read(), lse1).err, lt::lse_tolerance())
          << c.name() << " chunks of " << keys << " x " << rows;
    }
  }

 private:
  int refused_ = 0;
};
INSTANTIATE_TEST_SUITE_P(Kernels, CudaShapes, ::testing::Values("auto", "mma"),
                         lt::gpu::kernel_choice_name);

// ---- head dims ---------------------------------------------------------------

// Every D from 1 to 256 with Dv = D on a prefill (33 queries of a GQA pair:
// 66 packed rows), and with Dv = 257 - D (so every Dv too) on a decode-sized
// call (3 queries); the dtype and causal rotate with D.
TEST_P(CudaShapes, EveryHeadDimFrom1To256) {
  for (std::int64_t D = 1; D <= 256; ++D) {
    Case c;
    c.B = 1, c.Hq = 2, c.Hkv = 1, c.Lq = 33, c.Lk = 77, c.D = D;
    c.dtype = kDtypes[D % 3];
    c.causal = D % 2 == 0;
    c.seed = static_cast<std::uint64_t>(20000 + D);
    check_shape(c);
    c.Dv = 257 - D;
    c.Lq = 3, c.Lk = 150;
    c.dtype = kDtypes[(D + 1) % 3];
    c.seed += 1000;
    check_shape(c);
  }
}

// The odd shapes on every dtype, causal or not, GQA 4, at lengths that end
// inside tiles (63 x 65, 65 x 200), and longer (200 x 1000, 1000 x 1000, on
// one dtype each).
TEST_P(CudaShapes, OddHeadDimsAndLengths) {
  std::uint64_t seed = 21000;
  int n = 0;
  for (const HeadShape& s : kOddShapes) {
    for (DType t : kDtypes)
      for (bool causal : {false, true})
        for (auto [Lq, Lk] : {std::pair<std::int64_t, std::int64_t>{63, 65}, {65, 200}}) {
          Case c;
          c.B = 1, c.Hq = 8, c.Hkv = 2, c.Lq = Lq, c.Lk = Lk, c.D = s.D, c.Dv = s.Dv;
          c.dtype = t, c.causal = causal;
          c.seed = ++seed;
          check_shape(c);
        }
    for (auto [Lq, Lk, causal] : {std::tuple<std::int64_t, std::int64_t, bool>{200, 1000, false},
                                  {200, 1000, true},
                                  {1000, 1000, true}}) {
      Case c;
      c.B = 1, c.Hq = 4, c.Hkv = 1, c.Lq = Lq, c.Lk = Lk, c.D = s.D, c.Dv = s.Dv;
      c.dtype = kDtypes[++n % 3], c.causal = causal;
      c.sinks = Lq == 1000;
      c.seed = ++seed;
      check_shape(c);
    }
  }
}

// GQA ratios 1 to 16 at the MLA shape and at D 72.
TEST_P(CudaShapes, GqaRatiosOnOddHeadDims) {
  std::uint64_t seed = 21500;
  for (HeadShape s : {HeadShape{192, 128}, HeadShape{72, 72}})
    for (std::int64_t ratio : {1, 2, 4, 16})
      for (std::int64_t Lq : {1, 40}) {
        Case c;
        c.B = 1, c.Hq = 16, c.Hkv = 16 / ratio, c.Lq = Lq, c.Lk = 300, c.D = s.D, c.Dv = s.Dv;
        c.dtype = Lq == 1 ? DType::float16 : DType::bfloat16;
        c.causal = Lq > 1;
        c.seed = ++seed;
        check_shape(c);
      }
}

// Decode over a long cache (split-K, the vector kernel and the packed Hopper
// kernel): 1 to 8 queries of a GQA group of 4, sinks, causal with several
// queries; a 20000-key cache for the MLA shape.
TEST_P(CudaShapes, DecodeOnOddHeadDims) {
  std::uint64_t seed = 22000;
  for (const HeadShape& s : kOddShapes)
    for (DType t : kDtypes)
      for (std::int64_t Lq : {1, 3, 8}) {
        if (t == DType::float32 && Lq > 1) continue;  // the vector kernel either way
        Case c;
        c.B = 1, c.Hq = 4, c.Hkv = 1, c.Lq = Lq, c.D = s.D, c.Dv = s.Dv;
        c.Lk = Lq == 3 && t == DType::bfloat16 && s.D == 192 ? 20000 : 2048;
        c.dtype = t, c.causal = Lq > 1, c.sinks = Lq == 3;
        c.seed = ++seed;
        check_shape(c);
      }
}

TEST_P(CudaShapes, ChunkedEqualsSinglePassOnOddHeadDims) {
  std::uint64_t seed = 23000;
  for (HeadShape s : {HeadShape{192, 128}, HeadShape{72, 72}, HeadShape{1, 1}, HeadShape{255, 255},
                      HeadShape{100, 100}, HeadShape{48, 200}})
    for (DType t : kDtypes) {
      Case c;
      c.B = 1, c.Hq = 4, c.Hkv = 1, c.Lq = 96, c.Lk = 333, c.D = s.D, c.Dv = s.Dv;
      c.dtype = t, c.causal = s.D % 2 == 0, c.sinks = true;
      c.seed = ++seed;
      check_chunked(c, {{64, 48}, {100, 0}, {17, 5}});
    }
}

// Views one element past a 16-byte boundary, permuted (blhd) and
// cache-slice strides (q rows padded by 3 elements) at odd head dims: the
// misaligned and padded ones must take the element-wise paths (never the
// Hopper kernel, whose TMA needs 16-byte rows).
TEST_P(CudaShapes, MisalignedAndStridedViewsOnOddHeadDims) {
  std::uint64_t seed = 24000;
  for (HeadShape s : {HeadShape{1, 1}, HeadShape{33, 33}, HeadShape{72, 72}, HeadShape{100, 100},
                      HeadShape{130, 130}, HeadShape{255, 255}, HeadShape{192, 128}})
    for (DType t : kDtypes)
      for (std::int64_t Lq : {1, 130})
        for (int view = 0; view < 3; ++view) {
          Case c;
          c.B = 2, c.Hq = 2, c.Hkv = 1, c.Lq = Lq, c.Lk = 200, c.D = s.D, c.Dv = s.Dv;
          c.dtype = t, c.causal = Lq > 1, c.sinks = view == 1;
          c.misaligned = view == 0;
          c.layout = view == 1 ? Layout::blhd : view == 2 ? Layout::cache_slice : Layout::bhld;
          c.seed = ++seed;
          check_shape(c);
        }
}

// ---- soft-cap ------------------------------------------------------------------

// The soft-cap on every kernel path at a head dim the Hopper kernel serves:
// prefill (the Hopper kernel under "auto", else mma.sync; float32 the
// vector kernel) and decode (packed Hopper, or vector / mma.sync), causal or
// not, with logits the cap bends (|s| ~ 9 against 20) and logits far past
// it (|s| ~ 100: tanh saturates, so the softmax spreads over many keys
// where uncapped it would be one-hot).
TEST_P(CudaShapes, SoftcapOnEveryKernel) {
  const std::int64_t D = first_built({128, 64, 256}, true);
  if (D == 0) GTEST_SKIP() << "none of head dims 64, 128, 256 is built (LONGATTN_CUDA_HEAD_DIMS)";
  std::uint64_t seed = 25000;
  for (DType t : kDtypes)
    for (auto [Lq, Lk] : {std::pair<std::int64_t, std::int64_t>{200, 700}, {1, 3000}, {8, 2048}})
      for (bool causal : {false, true})
        for (double qk_std : {3.0, 10.0}) {
          Case c;
          c.B = 1, c.Hq = 4, c.Hkv = 1, c.Lq = Lq, c.Lk = Lk, c.D = D;
          c.dtype = t, c.causal = causal;
          c.softcap = 20, c.qk_std = qk_std;
          c.seed = ++seed;
          lt::CaseData d(c);
          longattn::AttentionOptions o;
          o.policy = lt::single_pass_policy();
          const std::vector<std::string> kernels = lt::gpu::run_cuda_kernels(d, o);
          const lt::Comparison r = lt::gpu::compare_sampled(d);
          EXPECT_TRUE(r.ok) << r.message;
          EXPECT_EQ(kernels, std::vector<std::string>{expected_kernel(c)}) << c.name();
          // Every logit is capped, so no LSE exceeds softcap + log(Lk).
          const double bound = 20 + std::log(static_cast<double>(Lk)) + 1e-3;
          for (double x : d.lse.read()) ASSERT_LE(x, bound) << c.name();
        }
}

// The soft-cap with what else shapes a logit: causal (both alignments), a
// sliding window, boolean and additive masks (added after the cap), sinks
// (not capped), GQA.
TEST_P(CudaShapes, SoftcapWithWindowMasksAndSinks) {
  const std::int64_t D = first_built({64, 128, 256}, true);
  if (D == 0) GTEST_SKIP() << "none of head dims 64, 128, 256 is built (LONGATTN_CUDA_HEAD_DIMS)";
  struct Visibility {
    bool causal, top_left;
    std::int64_t left, right;
  };
  const Visibility kinds[] = {
      {true, false, -1, -1}, {false, false, 40, 9}, {true, false, 70, -1}, {true, true, -1, -1}};
  std::uint64_t seed = 26000;
  int n = 0;
  for (DType t : kDtypes)
    for (MaskKind mask : {MaskKind::none, MaskKind::boolean, MaskKind::additive})
      for (const Visibility& v : kinds) {
        ++n;
        Case c;
        c.B = 2, c.Hq = 4, c.Hkv = 2, c.Lq = 70, c.Lk = 256, c.D = D;
        c.dtype = t, c.mask = mask, c.mask_broadcast = {false, true, false, false};
        c.causal = v.causal, c.causal_top_left = v.top_left;
        c.window_left = v.left, c.window_right = v.right;
        c.sinks = (n + n / 4) % 2 == 0;  // with and without, for each visibility
        c.softcap = 10, c.qk_std = 3;
        c.seed = ++seed;
        check_shape(c);
      }
}

TEST_P(CudaShapes, SoftcapChunkedEqualsSinglePass) {
  const std::int64_t D = first_built({128});
  std::uint64_t seed = 27000;
  for (DType t : kDtypes)
    for (bool causal : {false, true}) {
      Case c;
      c.B = 1, c.Hq = 4, c.Hkv = 2, c.Lq = 150, c.Lk = 400, c.D = D;
      c.dtype = t, c.causal = causal, c.sinks = true;
      c.mask = MaskKind::additive, c.mask_broadcast = {true, true, false, false};
      c.softcap = 8, c.qk_std = 4;
      c.seed = ++seed;
      check_chunked(c, {{64, 48}, {100, 0}, {17, 5}});
    }
}

TEST_P(CudaShapes, SoftcapOnOddHeadDims) {
  std::uint64_t seed = 28000;
  for (HeadShape s : {HeadShape{72, 72}, HeadShape{192, 128}, HeadShape{1, 1}, HeadShape{255, 255},
                      HeadShape{48, 200}})
    for (DType t : kDtypes)
      for (std::int64_t Lq : {1, 100}) {
        Case c;
        c.B = 1, c.Hq = 8, c.Hkv = 2, c.Lq = Lq, c.Lk = 300, c.D = s.D, c.Dv = s.Dv;
        c.dtype = t, c.causal = Lq > 1, c.sinks = Lq == 1;
        c.softcap = 15, c.qk_std = 3;
        c.seed = ++seed;
        check_shape(c);
      }
}

// Rows that see no key stay O = 0 and LSE = -inf (or the sink), never NaN:
// the cap must not turn a hidden key's -inf into a finite -softcap. Bottom-
// right causal with Lq = Lk + 200 hides every key from the first 200 rows.
TEST_P(CudaShapes, SoftcapRowsThatSeeNoKey) {
  const std::int64_t D = first_built({128});
  for (DType t : kDtypes)
    for (bool sinks : {false, true})
      for (bool chunked : {false, true}) {
        Case c;
        c.B = 1, c.Hq = 4, c.Hkv = 2, c.Lq = 300, c.Lk = 100, c.D = D;
        c.dtype = t, c.causal = true, c.sinks = sinks;
        c.softcap = 3;
        c.seed = 29000 + (sinks ? 1 : 0);
        lt::CaseData d(c);
        longattn::AttentionOptions o;
        o.policy = chunked ? lt::chunked_policy(64, 48) : lt::single_pass_policy();
        lt::gpu::run_cuda(d, o);
        const lt::Comparison r = lt::compare(d);
        EXPECT_TRUE(r.ok) << r.message;
        lt::expect_empty_rows(d, lt::first_rows(200));
      }
}

}  // namespace
