// CUDA array masks (issue 12) against the float64 reference: boolean and
// additive (float32, float16, bfloat16) masks of every broadcast the API
// accepts, on the Hopper kernel where it applies (the run report must name
// it), and masks with block structure the kernels skip tiles of: a band, a
// block diagonal (documents packed into one sequence), whole hidden 128 x 128
// tiles, ALiBi-like slopes with -inf blocks, fully hidden rows, masks that
// hide or show everything. Skipping must never change a result: a band given
// as a dense mask agrees with the same sliding window, a causal mask array
// with causal = true, a boolean mask with the same additive one, an
// all-visible mask with no mask, and chunked runs with the single pass.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "cuda_harness.hpp"
#include "test_common.hpp"

namespace {

using longattn::DType;
using lt::Case;
using lt::MaskKind;

const double kInf = std::numeric_limits<double>::infinity();
const DType kDtypes[] = {DType::float32, DType::float16, DType::bfloat16};
constexpr std::int64_t kTile = 128;  // the tiles the block-structured masks are drawn on

bool is_hopper_dim(std::int64_t d) { return d == 64 || d == 128 || d == 256; }

// Entry values of a mask of `kind` for a key that is kept / dropped.
double keep(MaskKind kind) { return kind == MaskKind::boolean ? 1.0 : 0.0; }
double drop(MaskKind kind) { return kind == MaskKind::boolean ? 0.0 : -kInf; }

// Sets every entry of d's mask, in its own shape (a broadcast dim has size
// 1), to value(b, h, i, j).
template <class F>
void fill_mask(lt::CaseData& d, F value) {
  const auto& ms = d.in.mask_shape;
  for (std::int64_t b = 0; b < ms[0]; ++b)
    for (std::int64_t h = 0; h < ms[1]; ++h)
      for (std::int64_t i = 0; i < ms[2]; ++i)
        for (std::int64_t j = 0; j < ms[3]; ++j) d.set_mask(b, h, i, j, value(b, h, i, j));
}

// Independent of the library and the reference: does row i see key j under
// c's causal rule and window?
bool sees(const Case& c, std::int64_t i, std::int64_t j) {
  const std::int64_t diag = c.causal_top_left ? i : i + c.Lk - c.Lq;
  if (c.causal && j > diag) return false;
  if (c.window_left >= 0 && j < diag - c.window_left) return false;
  if (c.window_right >= 0 && j > diag + c.window_right) return false;
  return true;
}

// 4 query heads over 2 KV heads, Lq x Lk, and a [1, 1, Lq, Lk] mask of
// `kind` that the test fills entry by entry (none is dropped at random).
Case masked_case(DType t, std::int64_t Lq, std::int64_t Lk, std::int64_t D, MaskKind kind,
                 DType additive = DType::float32) {
  Case c;
  c.B = 1, c.Hq = 4, c.Hkv = 2, c.Lq = Lq, c.Lk = Lk, c.D = D;
  c.dtype = t, c.mask = kind, c.additive_dtype = additive;
  c.mask_broadcast = {true, true, false, false};
  c.mask_drop = 0;
  return c;
}

// Two runs over the same q, k, v that must agree: O within the dtype's
// tolerance, LSE within the LSE tolerance.
void expect_same(lt::CaseData& a, lt::CaseData& b, const char* what) {
  ASSERT_EQ(a.in.q, b.in.q) << what;  // the same inputs (the mask is drawn after them)
  ASSERT_EQ(a.in.v, b.in.v) << what;
  const lt::Metric o = lt::metric(a.out.read(), b.out.read(), a.c.dv());
  EXPECT_LE(o.err, lt::tolerance(a.c.dtype, a.c.Lk))
      << what << ": " << a.c.name() << " vs " << b.c.name() << ": O err " << o.err;
  const lt::Metric l = lt::lse_metric(a.lse.read(), b.lse.read());
  EXPECT_LE(l.err, lt::lse_tolerance())
      << what << ": " << a.c.name() << " vs " << b.c.name() << ": LSE err " << l.err;
}

class CudaMasks : public lt::gpu::KernelChoiceTest {
 protected:
  void SetUp() override {
    KernelChoiceTest::SetUp();
    if (IsSkipped()) return;
    for (std::int64_t d : lt::gpu::built_head_dims())
      if (is_hopper_dim(d)) hopper_dims_.push_back(d);
    if (hopper_dims_.empty())
      GTEST_SKIP() << "none of head dims 64, 128, 256 (the Hopper kernel's) is built "
                      "(LONGATTN_CUDA_HEAD_DIMS)";
  }

  // `preferred` if built, else another head dim the Hopper kernel serves.
  std::int64_t hopper_dim(std::int64_t preferred) const {
    return std::find(hopper_dims_.begin(), hopper_dims_.end(), preferred) != hopper_dims_.end()
               ? preferred
               : hopper_dims_.front();
  }

  // Runs d under `policy` (outputs reset first), checks it against the
  // reference (sampled rows and `rows`) and, single pass, the kernel
  // (expected_kernel: masks of every kind run on the Hopper kernel too).
  void check(lt::CaseData& d, const longattn::Policy& policy = lt::single_pass_policy(),
             const std::vector<std::int64_t>& rows = {}) const {
    d.reset_outputs();
    longattn::AttentionOptions o;
    o.policy = policy;
    const std::vector<std::string> kernels = lt::gpu::run_cuda_kernels(d, o);
    const lt::Comparison r = lt::gpu::compare_sampled(d, rows);
    EXPECT_TRUE(r.ok) << r.message;
    if (policy.fixed_chunk_keys == 0) {
      EXPECT_EQ(kernels, std::vector<std::string>{expected_kernel(d.c)}) << d.c.name();
    }
  }

 private:
  std::vector<std::int64_t> hopper_dims_;
};
INSTANTIATE_TEST_SUITE_P(Kernels, CudaMasks, ::testing::Values("auto", "mma"),
                         lt::gpu::kernel_choice_name);

// ---- kinds and broadcasts --------------------------------------------------------

// Every mask kind and broadcast of [B, Hq, Lq, Lk] (size 1 or stride 0),
// random entries (a quarter dropped), GQA, causal or not, each head dim of
// the Hopper kernel in turn: 16-bit prefill takes the Hopper kernel.
TEST_P(CudaMasks, EveryKindAndBroadcast) {
  using Broadcast = std::array<bool, 4>;
  const std::vector<Broadcast>& broadcasts = lt::mask_broadcasts();
  const std::pair<MaskKind, DType> kinds[] = {{MaskKind::boolean, DType::boolean},
                                              {MaskKind::additive, DType::float32},
                                              {MaskKind::additive, DType::float16},
                                              {MaskKind::additive, DType::bfloat16}};
  std::size_t n = 0;
  for (const Broadcast& bc : broadcasts)
    for (bool stride0 : {false, true})
      for (const auto& [kind, mask_dtype] : kinds) {
        Case c;
        c.B = 2, c.Hq = 4, c.Hkv = 2, c.Lq = 160, c.Lk = 256;
        c.D = hopper_dim(n % 3 == 0 ? 64 : n % 3 == 1 ? 128 : 256);
        c.dtype = kDtypes[(n / 3) % 3];
        c.causal = n % 2 == 1;
        c.mask = kind, c.additive_dtype = mask_dtype;
        c.mask_broadcast = bc, c.mask_stride0 = stride0;
        c.seed = 40000 + n++;
        lt::CaseData d(c);
        check(d);
      }
}

// ---- block structure: skipping never changes a result ---------------------------

// A band (sliding window) as a dense boolean mask and as window_left /
// window_right: the window skips by its bounds, the mask by its block
// summary; both match the reference and each other.
TEST_P(CudaMasks, BandMaskEqualsSlidingWindow) {
  const std::int64_t D = hopper_dim(128);
  std::uint64_t seed = 41000;
  for (auto [t, L] : {std::pair<DType, std::int64_t>{DType::bfloat16, 1024},
                      {DType::bfloat16, 2048},
                      {DType::float16, 1000},
                      {DType::float32, 600}})
    for (auto [left, right] : {std::pair<std::int64_t, std::int64_t>{127, 0}, {300, 40}, {0, 0}}) {
      Case w = masked_case(t, L, L, D, MaskKind::none);
      w.window_left = left, w.window_right = right;
      w.seed = ++seed;
      lt::CaseData win(w);
      check(win);

      Case m = masked_case(t, L, L, D, MaskKind::boolean);
      m.seed = w.seed;
      lt::CaseData dense(m);
      fill_mask(dense, [&](auto, auto, std::int64_t i, std::int64_t j) {
        return sees(w, i, j) ? 1.0 : 0.0;
      });
      check(dense);
      expect_same(dense, win, "band mask vs window");
    }
}

// A causal mask array (bottom-right, boolean; top-left, additive 0 / -inf)
// and causal = true, with Lq = Lk, Lq < Lk and Lq > Lk (rows that see
// nothing).
TEST_P(CudaMasks, CausalMaskEqualsCausal) {
  const std::int64_t D = hopper_dim(128);
  std::uint64_t seed = 42000;
  for (auto [Lq, Lk] :
       {std::pair<std::int64_t, std::int64_t>{1024, 1024}, {700, 1024}, {1024, 700}})
    for (bool top_left : {false, true}) {
      const DType t = top_left ? DType::float16 : DType::bfloat16;
      Case cz = masked_case(t, Lq, Lk, D, MaskKind::none);
      cz.causal = true, cz.causal_top_left = top_left;
      cz.seed = ++seed;
      lt::CaseData causal(cz);
      check(causal);

      const MaskKind kind = top_left ? MaskKind::additive : MaskKind::boolean;
      Case m = masked_case(t, Lq, Lk, D, kind, DType::bfloat16);
      m.seed = cz.seed;
      lt::CaseData dense(m);
      fill_mask(dense, [&](auto, auto, std::int64_t i, std::int64_t j) {
        return sees(cz, i, j) ? keep(kind) : drop(kind);
      });
      check(dense);
      expect_same(dense, causal, "causal mask vs causal");
    }
}

// Documents packed into one sequence: each row sees the keys of its own
// document (and, with causal, none after itself). Documents of 1 key, ones
// that end inside a tile and on a tile edge. As a boolean mask and as an
// additive 0 / -inf one, which must agree.
TEST_P(CudaMasks, BlockDiagonalDocuments) {
  const std::int64_t D = hopper_dim(64);
  struct Documents {
    DType t, additive;
    std::vector<std::int64_t> bounds;  // document i is [bounds[i], bounds[i + 1])
  };
  const Documents cases[] = {
      {DType::bfloat16, DType::bfloat16, {0, 300, 301, 1024, 1100, 1800, 2048}},
      {DType::float16, DType::float16, {0, 128, 256, 257, 700, 1000}},
      {DType::float32, DType::float32, {0, 100, 101, 333, 500}}};
  std::uint64_t seed = 43000;
  for (const Documents& docs : cases)
    for (bool causal : {false, true}) {
      const std::int64_t L = docs.bounds.back();
      auto doc = [&](std::int64_t i) {
        return std::upper_bound(docs.bounds.begin(), docs.bounds.end(), i) - docs.bounds.begin();
      };
      ++seed;
      auto run = [&](MaskKind kind) {
        Case c = masked_case(docs.t, L, L, D, kind, docs.additive);
        c.causal = causal;
        c.seed = seed;
        lt::CaseData d(c);
        fill_mask(d, [&](auto, auto, std::int64_t i, std::int64_t j) {
          return doc(i) == doc(j) ? keep(kind) : drop(kind);
        });
        check(d);
        return d;
      };
      lt::CaseData boolean = run(MaskKind::boolean);
      lt::CaseData additive = run(MaskKind::additive);
      expect_same(additive, boolean, "additive vs boolean documents");
    }
}

// Whole 128 x 128 tiles hidden, whole tiles visible (all true, or finite
// additive values) and mixed ones; one block of 128 rows hidden from every
// key (those rows give O = 0, LSE = -inf) and one block of 128 keys hidden
// from every row. Aligned sizes and sizes that end inside tiles.
TEST_P(CudaMasks, HiddenVisibleAndMixedTiles) {
  const std::int64_t D = hopper_dim(256);
  std::uint64_t seed = 44000;
  for (auto [t, Lq, Lk] :
       {std::tuple<DType, std::int64_t, std::int64_t>{DType::bfloat16, 1024, 1024},
        {DType::float16, 1000, 1100},
        {DType::bfloat16, 640, 2048},
        {DType::float32, 512, 700}})
    for (MaskKind kind : {MaskKind::boolean, MaskKind::additive}) {
      Case c = masked_case(t, Lq, Lk, D, kind, DType::float32);
      c.seed = ++seed;
      lt::CaseData d(c);
      std::mt19937_64 rng(c.seed);
      std::uniform_real_distribution<double> u(0.0, 1.0);
      fill_mask(d, [&](auto, auto, std::int64_t i, std::int64_t j) {
        const std::int64_t ti = i / kTile, tj = j / kTile;
        const double value = kind == MaskKind::boolean ? 1.0 : 6 * u(rng) - 3;
        if (ti == 3 || tj == 2) return drop(kind);
        switch ((3 * ti + 5 * tj) % 4) {
          case 0:
            return drop(kind);
          case 1:
            return value;
          default:
            return u(rng) < 0.3 ? drop(kind) : value;
        }
      });
      std::vector<std::int64_t> hidden(kTile);
      std::iota(hidden.begin(), hidden.end(), 3 * kTile);
      check(d, lt::single_pass_policy(), {3 * kTile, 4 * kTile - 1});
      lt::expect_empty_rows(d, hidden);
    }
}

// ALiBi-like: a per-head additive mask [1, Hq, L, L] of -slope_h * (i - j)
// with blocks of -inf below the diagonal, causal, in each mask dtype.
TEST_P(CudaMasks, AlibiSlopesWithMinusInfBlocks) {
  const std::int64_t D = hopper_dim(128);
  std::uint64_t seed = 45000;
  for (auto [t, additive, L] :
       {std::tuple<DType, DType, std::int64_t>{DType::bfloat16, DType::float32, 1024},
        {DType::float16, DType::float16, 1024},
        {DType::bfloat16, DType::bfloat16, 1024},
        {DType::float32, DType::float32, 512}}) {
    Case c = masked_case(t, L, L, D, MaskKind::additive, additive);
    c.mask_broadcast = {true, false, false, false};
    c.causal = true;
    c.seed = ++seed;
    lt::CaseData d(c);
    fill_mask(d, [&](auto, std::int64_t h, std::int64_t i, std::int64_t j) {
      const std::int64_t ti = i / kTile, tj = j / kTile;
      if (tj < ti && (ti + 2 * tj) % 5 == 1) return -kInf;
      return -std::ldexp(1.0, -static_cast<int>(h) - 1) * static_cast<double>(std::abs(i - j));
    });
    check(d);
  }
}

// The Hopper kernel folds the softmax scale into the exponent (mask terms
// enter as v / scale) for scale >= 2^-8, and scales first below it (and at
// 0 or a negative scale, where folding would change the max): scales on
// both sides of that edge, each mask kind, bias terms from -inf to 40, a
// soft-cap beside (which never folds), each Hopper head dim, against the
// reference.
TEST_P(CudaMasks, FoldedAndUnfoldedScales) {
  std::uint64_t seed = 45500;
  for (double scale : {0.125, std::ldexp(1.0, -8), std::ldexp(1.0, -9), 0.0, -0.09})
    for (const auto& [kind, additive] : {std::pair{MaskKind::additive, DType::bfloat16},
                                         std::pair{MaskKind::additive, DType::float32},
                                         std::pair{MaskKind::boolean, DType::boolean}})
      for (float softcap : {0.f, 20.f}) {
        // 528 keys: rows 16-byte aligned in every mask dtype (so TMA copies
        // them), the last tile partial.
        const std::int64_t D = hopper_dim(seed % 3 == 0 ? 64 : seed % 3 == 1 ? 128 : 256);
        Case c = masked_case(DType::bfloat16, 300, 528, D, kind, additive);
        c.scale = scale, c.softcap = softcap;
        c.qk_std = 3.0;
        c.seed = ++seed;
        lt::CaseData d(c);
        fill_mask(d, [&](auto, auto, std::int64_t i, std::int64_t j) {
          if (kind == MaskKind::boolean) return (i * 7 + j * 3) % 5 == 0 ? 0.0 : 1.0;
          if ((i + 2 * j) % 11 == 0) return -kInf;
          return 40.0 * std::sin(0.37 * static_cast<double>(i) + 0.11 * static_cast<double>(j));
        });
        check(d);
      }
}

// The Hopper kernel adds a finite bias of the inputs' dtype on the tensor
// cores (D = 64, where 1 / scale is exact in that dtype), tile by tile where
// the mask's blocks are finite or open, and reads the rest as before: here
// finite, open and -inf-holding tiles side by side, per head or broadcast,
// at scales whose 1 / scale is exact (8, 4) and one whose is not, in
// chunks (a chunked call summarizes its mask, so the product runs there)
// against the float64 reference and the single pass (a call this small
// takes no summary: every tile on the old path). Chunks of 200 keys end
// inside a 128-key tile whose
// keys past the chunk's end hold -inf (keys 448..455): the product reads
// them, so that tile must take the other path, or -inf x 0 would be NaN in
// the chunk's own columns.
TEST_P(CudaMasks, FiniteBiasOnTheTensorCores) {
  const std::int64_t D = hopper_dim(64);
  std::uint64_t seed = 45700;
  for (DType t : {DType::bfloat16, DType::float16})
    for (double scale : {0.125, 0.25, 0.3})
      for (bool per_head : {false, true}) {
        Case c = masked_case(t, 700, 1096, D, MaskKind::additive, t);
        if (per_head) c.mask_broadcast = {true, false, false, false};
        c.scale = scale;
        c.seed = ++seed;
        lt::CaseData d(c);
        fill_mask(d, [&](auto, std::int64_t h, std::int64_t i, std::int64_t j) {
          const std::int64_t tj = j / kTile;
          if (j >= 448 && j < 456) return -kInf;
          if (tj == 1 && i % 5 == 0 && j % 7 == 0) return -kInf;
          if (tj == 5) return 0.0;
          return 6.0 * std::sin(0.37 * static_cast<double>(i) + 0.11 * static_cast<double>(j)) -
                 0.01 * static_cast<double>(h + 1) * static_cast<double>(std::abs(i - j));
        });
        check(d);
        const std::vector<double> o1 = d.out.read();
        for (auto [keys, rows] : {std::pair<std::int64_t, std::int64_t>{200, 0}, {128, 96}}) {
          check(d, lt::chunked_policy(keys, rows));
          EXPECT_LE(lt::metric(d.out.read(), o1, c.dv()).err, lt::tolerance(t, c.Lk))
              << c.name() << " chunks of " << keys << " x " << rows;
        }
      }
}

// ---- rows that see nothing, masks that hide or show everything ------------------

TEST_P(CudaMasks, FullyMaskedRowsGiveZeroAndMinusInf) {
  const std::int64_t D = hopper_dim(64);
  const std::vector<std::int64_t> rows{0, 127, 128, 129, 500, 639};
  for (DType t : kDtypes)
    for (MaskKind kind : {MaskKind::boolean, MaskKind::additive})
      for (bool sinks : {false, true})
        for (bool chunked : {false, true}) {
          Case c = masked_case(t, 640, 768, D, kind, DType::float16);
          c.mask_drop = 0.25;
          c.sinks = sinks;
          c.seed = 46000 + (kind == MaskKind::boolean ? 0 : 1);
          lt::CaseData d(c);
          for (std::int64_t i : rows)
            for (std::int64_t j = 0; j < c.Lk; ++j) d.set_mask(0, 0, i, j, drop(kind));
          check(d, chunked ? lt::chunked_policy(256, 96) : lt::single_pass_policy(), rows);
          lt::expect_empty_rows(d, rows);
        }
}

// A mask that shows every key (all true; additive all zero, in each dtype)
// gives the unmasked result; one that hides every key (all false; all -inf)
// gives O = 0 and LSE = -inf (or the sink) in every row.
TEST_P(CudaMasks, MasksThatShowOrHideEverything) {
  const std::int64_t D = hopper_dim(256);
  std::vector<std::int64_t> all_rows(300);
  std::iota(all_rows.begin(), all_rows.end(), 0);
  for (DType t : kDtypes) {
    const std::uint64_t seed = 47000 + static_cast<std::uint64_t>(t);
    Case p = masked_case(t, 300, 512, D, MaskKind::none);
    p.seed = seed;
    lt::CaseData plain(p);
    check(plain);
    const std::tuple<MaskKind, DType, std::array<bool, 4>> shows[] = {
        {MaskKind::boolean, DType::boolean, {true, true, false, false}},
        {MaskKind::boolean, DType::boolean, {true, true, true, true}},
        {MaskKind::additive, DType::float32, {true, false, false, false}},
        {MaskKind::additive, DType::float16, {true, true, false, false}},
        {MaskKind::additive, DType::bfloat16, {true, true, true, false}}};
    for (const auto& [kind, additive, bc] : shows) {
      Case c = masked_case(t, 300, 512, D, kind, additive);
      c.mask_broadcast = bc;
      c.seed = seed;
      lt::CaseData d(c);
      fill_mask(d, [&](auto, auto, auto, auto) { return keep(kind); });
      check(d);
      expect_same(d, plain, "a mask that shows everything vs no mask");
    }
    for (MaskKind kind : {MaskKind::boolean, MaskKind::additive})
      for (bool sinks : {false, true}) {
        Case c = masked_case(t, 300, 512, D, kind, DType::bfloat16);
        c.sinks = sinks;
        c.seed = seed;
        lt::CaseData d(c);
        fill_mask(d, [&](auto, auto, auto, auto) { return drop(kind); });
        check(d);
        lt::expect_empty_rows(d, all_rows);
      }
  }
}

// ---- chunked == single pass, decode ----------------------------------------------

// Chunks whose edges do not fall on the mask's blocks (100 x 77) and ones
// that do (128 keys), over a band, documents and random per-head entries.
TEST_P(CudaMasks, ChunkedEqualsSinglePass) {
  const std::int64_t D = hopper_dim(128);
  std::uint64_t seed = 48000;
  for (int shape = 0; shape < 3; ++shape)
    for (DType t : kDtypes) {
      Case c = masked_case(t, 1024, 1024, D, shape == 1 ? MaskKind::additive : MaskKind::boolean,
                           DType::bfloat16);
      if (shape == 2) {
        c.Lq = 400, c.Lk = 600;
        c.mask_broadcast = {true, false, false, false};
        c.mask_drop = 0.25;
      }
      c.sinks = shape == 0;
      c.seed = ++seed;
      lt::CaseData d(c);
      if (shape == 0)  // a band of 200 keys back, the diagonal included
        fill_mask(d, [](auto, auto, std::int64_t i, std::int64_t j) {
          return j <= i && j > i - 200 ? 1.0 : 0.0;
        });
      if (shape == 1)  // documents of 300, 1 and 723 tokens, causal inside
        fill_mask(d, [](auto, auto, std::int64_t i, std::int64_t j) {
          auto doc = [](std::int64_t x) { return (x >= 300) + (x >= 301); };
          return doc(i) == doc(j) && j <= i ? 0.0 : -kInf;
        });
      check(d);
      const std::vector<double> o1 = d.out.read(), lse1 = d.lse.read();
      for (auto [keys, rows] :
           {std::pair<std::int64_t, std::int64_t>{128, 0}, {300, 200}, {100, 77}}) {
        check(d, lt::chunked_policy(keys, rows));
        EXPECT_LE(lt::metric(d.out.read(), o1, c.dv()).err, lt::tolerance(t, c.Lk))
            << c.name() << " chunks of " << keys << " x " << rows;
        EXPECT_LE(lt::lse_metric(d.lse.read(), lse1).err, lt::lse_tolerance())
            << c.name() << " chunks of " << keys << " x " << rows;
      }
    }
}

// Decode (1 to 8 queries of a GQA group of 4) over a 2048-key cache with a
// per-query random mask, a padding mask per batch ([B, 1, 1, Lk]: the last
// keys of batch 1 hidden) and a band of the last 1000 keys.
TEST_P(CudaMasks, DecodeWithMasks) {
  const std::int64_t D = hopper_dim(128);
  std::uint64_t seed = 49000;
  for (DType t : kDtypes)
    for (std::int64_t Lq : {1, 4, 8})
      for (int shape = 0; shape < 3; ++shape) {
        Case c;
        c.B = shape == 1 ? 2 : 1, c.Hq = 4, c.Hkv = 1, c.Lq = Lq, c.Lk = 2048, c.D = D;
        c.dtype = t, c.causal = Lq > 1;
        c.mask = shape == 1 ? MaskKind::additive : MaskKind::boolean;
        c.additive_dtype = t;
        c.mask_broadcast = shape == 0   ? std::array<bool, 4>{false, false, false, false}
                           : shape == 1 ? std::array<bool, 4>{false, true, true, false}
                                        : std::array<bool, 4>{true, true, false, false};
        c.mask_drop = shape == 0 ? 0.5 : 0.0;
        c.seed = ++seed;
        lt::CaseData d(c);
        if (shape == 1)
          fill_mask(d, [](std::int64_t b, auto, auto, std::int64_t j) {
            return b == 1 && j >= 1500 ? -kInf : 0.0;
          });
        if (shape == 2)
          fill_mask(d, [&](auto, auto, std::int64_t i, std::int64_t j) {
            return j > i + c.Lk - c.Lq - 1000 ? 1.0 : 0.0;
          });
        check(d);
      }
}

}  // namespace
