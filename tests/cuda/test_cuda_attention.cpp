// CUDA backend against the float64 reference through the public API: every
// dtype and head dim, mask kinds, sliding windows, sinks, GQA ratios, odd
// lengths, layouts, chunked vs single pass, fully masked rows, split-K decode.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <initializer_list>
#include <iostream>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "cuda_harness.hpp"

namespace {

using longattn::DType;
using lt::Case;
using lt::Layout;
using lt::MaskKind;
using lt::gpu::check_cuda;
using lt::gpu::CudaTest;

const DType kDtypes[] = {DType::float32, DType::float16, DType::bfloat16};

// Every case runs on each kernel choice the device has: "auto" takes the
// Hopper (wgmma) kernel where it applies, decode-sized problems (at most 64
// packed rows) in its packed mode; "mma" (LONGATTN_CUDA_PREFILL=mma, read
// by each call's CUDA backend) forces the mma.sync kernel for prefill and
// so the vector kernel for decode, as on GPUs before Hopper. The tests aimed
// at one kernel assert, from the run report, that it is the one that ran.
class CudaAttention : public CudaTest, public ::testing::WithParamInterface<const char*> {
 protected:
  void SetUp() override {
    CudaTest::SetUp();
    const std::string k = GetParam();
    setenv("LONGATTN_CUDA_PREFILL", k == "mma" ? "mma" : "auto", 1);
  }
  void TearDown() override { unsetenv("LONGATTN_CUDA_PREFILL"); }
  // Whether this parameter runs the Hopper kernel on this device.
  bool wgmma() const { return std::string(GetParam()) == "auto" && lt::gpu::is_hopper(); }
};
INSTANTIATE_TEST_SUITE_P(Kernels, CudaAttention, ::testing::Values("auto", "mma"),
                         [](const ::testing::TestParamInfo<const char*>& i) {
                           return std::string(i.param);
                         });

// Of the head dims a test wants, those this build instantiated
// (LONGATTN_CUDA_HEAD_DIMS). The others are listed in `missing` so that the
// test can say what it did not check: skip when none is built, otherwise
// record them on the test (RecordProperty, in the XML report) and print them.
struct HeadDims {
  std::vector<std::int64_t> built, missing;
  std::string missing_list() const {
    std::string s;
    for (std::int64_t d : missing) s += (s.empty() ? "" : ", ") + std::to_string(d);
    return s;
  }
};
HeadDims head_dims_of(std::initializer_list<std::int64_t> wanted) {
  const std::vector<std::int64_t> built = lt::gpu::built_head_dims();
  HeadDims r;
  for (std::int64_t d : wanted)
    (std::find(built.begin(), built.end(), d) != built.end() ? r.built : r.missing).push_back(d);
  if (!r.built.empty() && !r.missing.empty()) {
    ::testing::Test::RecordProperty("head_dims_not_built", r.missing_list());
    std::cout << "[   NOTE   ] head dims not built, not tested: " << r.missing_list() << "\n";
  }
  return r;
}

TEST_P(CudaAttention, EveryDtypeAndHeadDim) {
  std::uint64_t seed = 1;
  for (std::int64_t D : lt::gpu::built_head_dims())
    for (DType t : kDtypes)
      for (bool causal : {false, true}) {
        Case c;
        c.B = 1, c.Hq = 4, c.Hkv = 2, c.Lq = 77, c.Lk = 131, c.D = D;
        c.dtype = t;
        c.causal = causal;
        c.seed = ++seed;
        check_cuda(c);
      }
}

TEST_P(CudaAttention, LengthsAroundTiles) {
  std::uint64_t seed = 100;
  for (DType t : {DType::bfloat16, DType::float16, DType::float32})
    for (std::int64_t Lq : {1, 2, 15, 63, 64, 65, 130})
      for (std::int64_t Lk : {1, 31, 33, 64, 65, 200})
        for (bool causal : {false, true}) {
          Case c;
          c.B = 2, c.Hq = 2, c.Hkv = 1, c.Lq = Lq, c.Lk = Lk, c.D = 64;
          c.dtype = t;
          c.causal = causal;
          c.seed = ++seed;
          check_cuda(c);
        }
}

TEST_P(CudaAttention, MoreQueriesThanKeysCausal) {
  for (DType t : kDtypes)
    for (auto [Lq, Lk] :
         {std::pair<std::int64_t, std::int64_t>{5, 3}, {97, 48}, {130, 64}, {200, 1}}) {
      Case c;
      c.Hq = 3, c.Hkv = 1, c.Lq = Lq, c.Lk = Lk, c.D = 128;
      c.dtype = t;
      c.causal = true;
      c.seed = static_cast<std::uint64_t>(Lq * 1000 + Lk);
      check_cuda(c);
    }
}

// PyTorch's top-left causal rule (query i sees keys j <= i) with more keys
// than queries (the last keys seen by no row) and more queries than keys,
// single pass and chunked.
TEST_P(CudaAttention, TopLeftCausal) {
  std::uint64_t seed = 1700;
  for (DType t : kDtypes)
    for (auto [Lq, Lk] : {std::pair<std::int64_t, std::int64_t>{100, 700}, {300, 129}, {1, 64}})
      for (bool chunked : {false, true}) {
        Case c;
        c.Hq = 4, c.Hkv = 2, c.Lq = Lq, c.Lk = Lk, c.D = 128;
        c.dtype = t, c.causal = true, c.causal_top_left = true;
        c.seed = ++seed;
        longattn::AttentionOptions base;
        base.policy = chunked ? lt::chunked_policy(64, 48) : lt::single_pass_policy();
        check_cuda(c, base);
      }
}

TEST_P(CudaAttention, MaskKinds) {
  std::uint64_t seed = 300;
  for (DType t : kDtypes)
    for (MaskKind mk : {MaskKind::boolean, MaskKind::additive})
      for (bool causal : {false, true})
        for (std::array<bool, 4> bc : {std::array<bool, 4>{false, false, false, false},
                                       std::array<bool, 4>{true, true, false, false},
                                       std::array<bool, 4>{true, false, true, false}}) {
          Case c;
          c.B = 2, c.Hq = 4, c.Hkv = 2, c.Lq = 70, c.Lk = 150, c.D = 64;
          c.dtype = t;
          c.mask = mk;
          c.causal = causal;
          c.mask_broadcast = bc;
          c.seed = ++seed;
          check_cuda(c);
        }
}

TEST_P(CudaAttention, AdditiveMaskDtypesAndStrideZero) {
  std::uint64_t seed = 400;
  for (DType mt : kDtypes)
    for (bool stride0 : {false, true}) {
      Case c;
      c.B = 1, c.Hq = 4, c.Hkv = 4, c.Lq = 33, c.Lk = 97, c.D = 128;
      c.dtype = DType::bfloat16;
      c.mask = MaskKind::additive;
      c.additive_dtype = mt;
      c.mask_broadcast = {true, true, false, false};
      c.mask_stride0 = stride0;
      c.seed = ++seed;
      check_cuda(c);
    }
}

TEST_P(CudaAttention, FullyMaskedRowsGiveZeroAndMinusInf) {
  for (DType t : kDtypes)
    for (bool sinks : {false, true}) {
      Case c;
      c.B = 1, c.Hq = 2, c.Hkv = 1, c.Lq = 40, c.Lk = 90, c.D = 64;
      c.dtype = t;
      c.mask = MaskKind::boolean;
      c.mask_drop = 0.0;
      c.sinks = sinks;
      c.seed = 500 + (sinks ? 1 : 0);
      lt::CaseData d(c);
      // Rows 3 and 39 of every head see nothing.
      for (std::int64_t j = 0; j < c.Lk; ++j)
        for (std::int64_t h = 0; h < c.Hq; ++h) {
          d.set_mask(0, h, 3, j, 0.0);
          d.set_mask(0, h, 39, j, 0.0);
        }
      lt::gpu::run_cuda(d);
      const lt::Comparison r = lt::compare(d);
      EXPECT_TRUE(r.ok) << r.message;
      // Chunked too: a fully masked chunk must merge as the identity.
      d.reset_outputs();
      longattn::AttentionOptions o;
      o.policy = lt::chunked_policy(32, 16);
      lt::gpu::run_cuda(d, o);
      const lt::Comparison r2 = lt::compare(d);
      EXPECT_TRUE(r2.ok) << "chunked: " << r2.message;
    }
}

TEST_P(CudaAttention, Sinks) {
  std::uint64_t seed = 600;
  for (DType t : kDtypes)
    for (bool causal : {false, true})
      for (std::int64_t Lq : {1, 50}) {
        Case c;
        c.B = 1, c.Hq = 8, c.Hkv = 2, c.Lq = Lq, c.Lk = 111, c.D = 64;
        c.dtype = t;
        c.causal = causal;
        c.sinks = true;
        c.seed = ++seed;
        check_cuda(c);
        longattn::AttentionOptions o;
        o.policy = lt::chunked_policy(40, 16);
        check_cuda(c, o);
      }
}

TEST_P(CudaAttention, GqaRatios) {
  std::uint64_t seed = 700;
  for (std::int64_t ratio : {1, 2, 4, 8, 32})
    for (std::int64_t Lq : {1, 3, 40})
      for (DType t : {DType::bfloat16, DType::float32}) {
        Case c;
        c.B = 1, c.Hq = 32, c.Hkv = 32 / ratio, c.Lq = Lq, c.Lk = 300, c.D = 128;
        c.dtype = t;
        c.causal = Lq > 1;
        c.seed = ++seed;
        check_cuda(c);
      }
}

TEST_P(CudaAttention, Layouts) {
  std::uint64_t seed = 800;
  for (Layout l : {Layout::blhd, Layout::cache_slice, Layout::cache_slice_blhd})
    for (DType t : kDtypes)
      for (std::int64_t Lq : {1, 70}) {
        Case c;
        c.B = 2, c.Hq = 4, c.Hkv = 2, c.Lq = Lq, c.Lk = 100, c.D = 64;
        c.dtype = t;
        c.layout = l;
        c.causal = true;
        c.seed = ++seed;
        check_cuda(c);
      }
}

// Shapes aimed at the Hopper kernel's tiles (128 query rows, 128 or 64 keys,
// D / 64 column blocks): several query tiles, key ends inside a tile,
// bottom-right causal with Lq < Lk, GQA, sinks, permuted and cache-slice
// layouts (TMA maps with non-monotonic strides and offset bases).
TEST_P(CudaAttention, HopperTileShapes) {
  const HeadDims dims = head_dims_of({64, 128, 256});
  if (dims.built.empty())
    GTEST_SKIP() << "none of head dims " << dims.missing_list()
                 << " is built (LONGATTN_CUDA_HEAD_DIMS)";
  std::uint64_t seed = 1300;
  for (std::int64_t D : dims.built) {
    for (DType t : {DType::bfloat16, DType::float16})
      for (auto [Lq, Lk, causal] : {std::tuple<std::int64_t, std::int64_t, bool>{300, 1000, true},
                                    {257, 257, true},
                                    {129, 700, false},
                                    {128, 64, false}})
        for (Layout l : {Layout::bhld, Layout::blhd, Layout::cache_slice_blhd}) {
          Case c;
          c.B = 2, c.Hq = 8, c.Hkv = 2, c.Lq = Lq, c.Lk = Lk, c.D = D;
          c.dtype = t;
          c.causal = causal;
          c.layout = l;
          c.sinks = Lq == 257;
          c.qk_std = D == 256 ? 3.0 : 1.0;
          c.seed = ++seed;
          EXPECT_EQ(lt::gpu::check_cuda_kernels(c),
                    std::vector<std::string>{wgmma() ? "cuda.wgmma" : "cuda.mma"})
              << c.name();
        }
  }
}

// Decode-sized problems (the packed mode of the Hopper kernel under
// "auto"; the vector and mma.sync kernels under "mma"): GQA groups 1, 2, 4
// and 32, one to a few queries (a tile holds 64 / group of them), causal
// with Lq > 1, sinks, split-K over long key ranges, and the cache-slice
// layout.
TEST_P(CudaAttention, DecodeShapes) {
  const HeadDims dims = head_dims_of({64, 128, 256});
  if (dims.built.empty())
    GTEST_SKIP() << "none of head dims " << dims.missing_list()
                 << " is built (LONGATTN_CUDA_HEAD_DIMS)";
  std::uint64_t seed = 1400;
  for (std::int64_t D : dims.built) {
    for (DType t : {DType::bfloat16, DType::float16})
      for (auto [Hq, Hkv] : {std::pair<std::int64_t, std::int64_t>{32, 8}, {8, 8}, {32, 1}, {4, 2}})
        for (std::int64_t Lq : {1, 3, 17}) {
          if (Lq * (Hq / Hkv) > 64) continue;
          Case c;
          c.B = 2, c.Hq = Hq, c.Hkv = Hkv, c.Lq = Lq, c.Lk = Lq == 3 ? 5000 : 700, c.D = D;
          c.dtype = t;
          c.causal = Lq > 1;
          c.sinks = Lq == 3;
          c.layout = Lq == 17 ? Layout::cache_slice : Layout::bhld;
          c.seed = ++seed;
          // The cache-slice layout pads q's rows to D + 3 elements, which
          // TMA cannot read. Without the Hopper kernel, up to 8 packed rows
          // (GQA heads x queries) take the vector kernel, more the mma.sync
          // kernel.
          const char* want = wgmma() && c.layout != Layout::cache_slice ? "cuda.wgmma.packed"
                             : Lq * (Hq / Hkv) <= 8                     ? "cuda.vector"
                                                                        : "cuda.mma";
          EXPECT_EQ(lt::gpu::check_cuda_kernels(c), std::vector<std::string>{want}) << c.name();
        }
  }
}

// Views that start one element past a 16-byte boundary (a tensor sliced
// at an odd offset): every kernel must read them element by element, and
// the Hopper kernel, whose TMA needs 16-byte alignment, must not take them.
TEST_P(CudaAttention, MisalignedViewsTakeTheElementwisePaths) {
  std::uint64_t seed = 1800;
  for (DType t : kDtypes)
    for (std::int64_t Lq : {1, 200}) {
      Case c;
      c.B = 2, c.Hq = 8, c.Hkv = 2, c.Lq = Lq, c.Lk = 700, c.D = 128;
      c.dtype = t, c.causal = Lq > 1, c.sinks = true, c.misaligned = true;
      c.seed = ++seed;
      const char* want =
          t == DType::float32 || Lq * (c.Hq / c.Hkv) <= 8 ? "cuda.vector" : "cuda.mma";
      EXPECT_EQ(lt::gpu::check_cuda_kernels(c), std::vector<std::string>{want}) << c.name();
    }
}

TEST_P(CudaAttention, ChunkedEqualsSinglePass) {
  std::uint64_t seed = 900;
  for (DType t : kDtypes)
    for (bool causal : {false, true})
      for (auto [chunk, rows] :
           {std::pair<std::int64_t, std::int64_t>{64, 0}, {100, 48}, {17, 5}}) {
        Case c;
        c.B = 1, c.Hq = 4, c.Hkv = 1, c.Lq = 96, c.Lk = 333, c.D = 128;
        c.dtype = t;
        c.causal = causal;
        c.sinks = true;
        c.seed = ++seed;
        lt::CaseData d(c);
        longattn::AttentionOptions single;
        single.policy = lt::single_pass_policy();
        lt::gpu::run_cuda(d, single);
        const lt::Comparison a = lt::compare(d);
        EXPECT_TRUE(a.ok) << "single pass: " << a.message;
        const std::vector<double> o1 = d.out.read();
        d.reset_outputs();
        longattn::AttentionOptions chunked;
        chunked.policy = lt::chunked_policy(chunk, rows);
        longattn::RunReport report;
        chunked.report = &report;
        lt::gpu::run_cuda(d, chunked);
        const lt::Comparison b = lt::compare(d);
        EXPECT_TRUE(b.ok) << "chunked " << chunk << "x" << rows << ": " << b.message;
        EXPECT_TRUE(report.plan.chunked);
        EXPECT_EQ(report.backend, "cuda");
        // Same kernels, different key order: within rounding of the output dtype.
        EXPECT_LE(lt::metric(d.out.read(), o1, c.dv()).err, lt::tolerance(t)) << c.name();
      }
}

// Sliding windows (window_left / window_right around either diagonal), with
// and without causal, single pass and chunked, on every kernel: windows of
// 0, inside a tile, across tiles and wider than Lk; Lq < Lk, Lq = Lk and
// Lq > Lk (rows whose window misses every key give 0 / -inf).
TEST_P(CudaAttention, SlidingWindow) {
  std::uint64_t seed = 5000;
  const std::pair<std::int64_t, std::int64_t> windows[] = {
      {0, 0}, {0, -1}, {5, -1}, {-1, 3}, {40, 7}, {130, 0}, {63, 200}, {5000, -1}, {-1, 5000}};
  for (DType t : kDtypes)
    for (auto [Lq, Lk] : {std::pair<std::int64_t, std::int64_t>{100, 700}, {257, 257}, {300, 129}})
      for (const auto& [left, right] : windows)
        for (bool causal : {false, true})
          for (bool top_left : {false, true})
            for (bool chunked : {false, true}) {
              if (top_left && (chunked || t == DType::float32)) continue;  // fewer cases
              Case c;
              c.Hq = 4, c.Hkv = 2, c.Lq = Lq, c.Lk = Lk, c.D = 128;
              c.dtype = t, c.causal = causal, c.causal_top_left = top_left;
              c.window_left = left, c.window_right = right;
              c.seed = ++seed;
              longattn::AttentionOptions base;
              base.policy = chunked ? lt::chunked_policy(64, 48) : lt::single_pass_policy();
              check_cuda(c, base);
            }
}

// A window with a mask array and sinks (the mma.sync kernel's element-wise
// path), and decode over a long cache where only the window's keys are read
// (split-K over the window alone, packed Hopper or vector kernel).
TEST_P(CudaAttention, SlidingWindowWithMaskAndDecode) {
  std::uint64_t seed = 5600;
  for (DType t : kDtypes)
    for (MaskKind kind : {MaskKind::boolean, MaskKind::additive}) {
      Case c;
      c.B = 2, c.Hq = 4, c.Hkv = 1, c.Lq = 90, c.Lk = 300, c.D = 128;
      c.dtype = t, c.mask = kind, c.sinks = true, c.causal = true, c.window_left = 70;
      c.mask_broadcast = {true, false, false, false};
      c.seed = ++seed;
      check_cuda(c);
    }
  for (DType t : kDtypes)
    for (std::int64_t Lq : {1, 2, 8})
      for (const auto& [left, right] :
           {std::pair<std::int64_t, std::int64_t>{1000, 0}, {4095, -1}, {0, 0}, {100, 50}}) {
        Case c;
        c.B = 1, c.Hq = 8, c.Hkv = 2, c.Lq = Lq, c.Lk = 20000, c.D = 128;
        c.dtype = t, c.causal = right == 0, c.window_left = left, c.window_right = right;
        c.sinks = Lq == 2;
        c.seed = ++seed;
        check_cuda(c);
      }
}

TEST_P(CudaAttention, SplitKDecodeAndPrefill) {
  std::uint64_t seed = 1000;
  // Decode: few rows, many keys -> the decode kernel (packed Hopper or
  // vector) split over keys, then the merge.
  for (DType t : kDtypes)
    for (std::int64_t Lq : {1, 2}) {
      Case c;
      c.B = 1, c.Hq = 8, c.Hkv = 2, c.Lq = Lq, c.Lk = 20000, c.D = 128;
      c.dtype = t;
      c.causal = true;
      c.sinks = Lq == 2;
      c.seed = ++seed;
      check_cuda(c);
    }
  // Tall-enough rows for the tensor-core kernel, too few blocks: split-K there.
  for (DType t : {DType::float16, DType::bfloat16}) {
    Case c;
    c.B = 1, c.Hq = 4, c.Hkv = 1, c.Lq = 40, c.Lk = 9000, c.D = 64;
    c.dtype = t;
    c.causal = true;
    c.seed = ++seed;
    check_cuda(c);
    longattn::AttentionOptions o;
    o.policy = lt::chunked_policy(4000, 0);
    check_cuda(c, o);
  }
}

TEST_P(CudaAttention, LargeLogitsAndSmallScale) {
  std::uint64_t seed = 1100;
  for (DType t : kDtypes) {
    Case c;
    c.B = 1, c.Hq = 2, c.Hkv = 2, c.Lq = 65, c.Lk = 129, c.D = 96;
    c.dtype = t;
    c.qk_std = 4.0;
    c.seed = ++seed;
    check_cuda(c);
    c.scale = 1e-3;
    check_cuda(c);
  }
}

TEST_P(CudaAttention, MatchesCpuBackend) {
  std::uint64_t seed = 1200;
  for (DType t : kDtypes) {
    Case c;
    c.B = 2, c.Hq = 8, c.Hkv = 2, c.Lq = 150, c.Lk = 260, c.D = 128;
    c.dtype = t;
    c.causal = true;
    c.sinks = true;
    c.seed = ++seed;
    EXPECT_LE(lt::gpu::cuda_vs_cpu(c), 2 * lt::tolerance(t)) << c.name();
  }
}

}  // namespace
