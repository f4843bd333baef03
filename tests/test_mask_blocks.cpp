// Array masks with block structure (a band, documents packed into one
// sequence, -inf blocks beside finite biases): the block summary lets the
// kernels skip hidden tiles and the planner cost only what the mask shows.
// Skipping must never change a result: every case is checked against the
// float64 reference (which reads every pair), and the band against the same
// band given as a sliding window. The report's FLOP count shows that the
// summary was used.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

#include "core/mask_blocks.hpp"
#include "test_common.hpp"

namespace {

using longattn::DType;
using lt::Case;
using lt::MaskKind;

const double kInf = std::numeric_limits<double>::infinity();

// A [1, 1, L, L] mask case big enough that the call summarizes its mask
// (attention.cpp: predicted over 1 ms on the CPU), filled by `term(i, j)`:
// for a boolean mask 1 keeps and 0 drops, for an additive one the value.
lt::CaseData mask_case(MaskKind kind, std::int64_t L, bool causal, std::uint64_t seed,
                       const std::function<double(std::int64_t, std::int64_t)>& term) {
  Case c;
  c.B = 1, c.Hq = 4, c.Hkv = 2, c.Lq = L, c.Lk = L, c.D = 64;
  c.mask = kind, c.mask_broadcast = {true, true, false, false};
  c.causal = causal;
  c.seed = seed;
  lt::CaseData d(c);
  for (std::int64_t i = 0; i < L; ++i)
    for (std::int64_t j = 0; j < L; ++j) d.set_mask(0, 0, i, j, term(i, j));
  return d;
}

// Runs the case (policy as given), checks it against the reference and
// returns the report.
longattn::RunReport run_checked(lt::CaseData& d, const longattn::Policy& policy) {
  longattn::AttentionOptions o;
  o.policy = policy;
  longattn::RunReport rep;
  o.report = &rep;
  d.reset_outputs();
  lt::run(d, o);
  const lt::Comparison cmp = lt::compare(d);
  EXPECT_TRUE(cmp.ok) << cmp.message;
  return rep;
}

// The summary of a one-row-of-blocks mask (64 queries x 64 n keys, its
// values from value(block, i, j)).
std::vector<std::uint8_t> summary_of(longattn::core::MaskKind kind, std::int64_t blocks,
                                     const std::function<float(int, int, int)>& value) {
  namespace core = longattn::core;
  constexpr std::int64_t B = core::kMaskBlock;
  const std::int64_t Lk = blocks * B;
  std::vector<float> add(static_cast<std::size_t>(B * Lk));
  std::vector<std::uint8_t> bits(add.size());
  for (std::int64_t i = 0; i < B; ++i)
    for (std::int64_t j = 0; j < Lk; ++j) {
      const float v = value(static_cast<int>(j / B), static_cast<int>(i), static_cast<int>(j % B));
      add[static_cast<std::size_t>(i * Lk + j)] = v;
      bits[static_cast<std::size_t>(i * Lk + j)] = v != 0.f;
    }
  core::Problem p;
  p.B = 1, p.Hq = 2, p.Hkv = 1, p.Lq = B, p.Lk = Lk, p.D = p.Dv = 64, p.group = 2;
  p.mask_kind = kind;
  p.mask_dtype = kind == core::MaskKind::boolean ? DType::boolean : DType::float32;
  p.mask = kind == core::MaskKind::boolean ? static_cast<const void*>(bits.data()) : add.data();
  p.mask_stride[2] = Lk, p.mask_stride[3] = 1;  // [1, 1, Lq, Lk]
  return core::summarize_mask_host(p);
}

// Each block kind of the summary: hidden (all -inf / false), open (all 0 /
// true), finite (every term finite, not all 0: what the Hopper kernel may
// add by tensor-core product) and partial (a -inf, NaN or inf among finite
// terms, or a boolean mask's mix). A single odd element decides.
TEST(MaskBlocks, SummaryKinds) {
  namespace core = longattn::core;
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto at = [](int i, int j, int ii, int jj) { return i == ii && j == jj; };
  const std::vector<std::uint8_t> additive =
      summary_of(core::MaskKind::additive, 8, [&](int blk, int i, int j) -> float {
        switch (blk) {
          case 0:
            return -inf;  // hidden
          case 1:
            return 0.f;  // open
          case 2:
            return at(i, j, 63, 63) ? 0.25f : 0.f;  // finite (one term)
          case 3:
            return -1e30f * static_cast<float>(i % 2);  // finite (large, beside 0)
          case 4:
            return at(i, j, 17, 5) ? -inf : 1.5f;  // partial (one -inf)
          case 5:
            return at(i, j, 0, 0) ? nan : 1.5f;  // partial (one NaN)
          case 6:
            return at(i, j, 40, 63) ? inf : -2.f;  // partial (one +inf)
          default:
            return at(i, j, 3, 3) ? 0.f : -inf;  // partial (one shown)
        }
      });
  using K = core::BlockKind;
  auto u = [](K k) { return static_cast<std::uint8_t>(k); };
  EXPECT_EQ(additive, (std::vector<std::uint8_t>{u(K::hidden), u(K::open), u(K::finite),
                                                 u(K::finite), u(K::partial), u(K::partial),
                                                 u(K::partial), u(K::partial)}));
  const std::vector<std::uint8_t> boolean =
      summary_of(core::MaskKind::boolean, 3, [&](int blk, int i, int j) -> float {
        return blk == 0 ? 0.f : blk == 1 ? 1.f : at(i, j, 9, 9) ? 0.f : 1.f;
      });
  EXPECT_EQ(boolean, (std::vector<std::uint8_t>{u(K::hidden), u(K::open), u(K::partial)}));
}

longattn::Policy unbudgeted() {
  longattn::Policy p = longattn::AttentionOptions::default_policy();
  p.budget_ms = 0;
  return p;
}

TEST(MaskBlocks, BandMaskMatchesTheReferenceAndTheSameWindow) {
  const std::int64_t L = lt::small_tests() ? 300 : 1000, w = 100;
  for (MaskKind kind : {MaskKind::boolean, MaskKind::additive}) {
    auto band = [&](std::int64_t i, std::int64_t j) {
      const bool keep = j <= i && i - j <= w;
      return kind == MaskKind::boolean ? (keep ? 1.0 : 0.0) : (keep ? 0.0 : -kInf);
    };
    lt::CaseData d = mask_case(kind, L, false, 31, band);
    // Chunked, so that the call always summarizes its mask (a single pass
    // only when that is worth it, attention.cpp).
    const longattn::RunReport rep = run_checked(d, lt::chunked_policy(128));
    run_checked(d, unbudgeted());
    const std::vector<double> masked = d.out.read();

    // The planner counted the blocks the band shows: at most the band's
    // width plus a 64 x 64 block on each side per row, far from L x L.
    const double dense = longattn::attention_flops(1, 4, L, L, 64, 64, false);
    EXPECT_LT(rep.total_flops, dense * static_cast<double>(w + 3 * 64) / static_cast<double>(L))
        << "the mask's block summary should cost only the band";
    EXPECT_GT(rep.total_flops, 0.0);

    // The same band as a window over the causal diagonal, no array.
    Case c = d.c;
    c.mask = MaskKind::none;
    c.causal = true;
    c.window_left = w;
    lt::CaseData win(c);
    run_checked(win, unbudgeted());
    const std::vector<double> windowed = win.out.read();
    ASSERT_EQ(masked.size(), windowed.size());
    double worst = 0;
    for (std::size_t i = 0; i < masked.size(); ++i)
      worst = std::max(worst, std::abs(masked[i] - windowed[i]));
    EXPECT_LT(worst, 1e-5) << "band as a mask vs as a window, " << lt::to_string(kind);
  }
}

TEST(MaskBlocks, DocumentsChunkedEqualsSinglePass) {
  // Four documents of unequal length packed into one sequence (boundaries
  // off the 64-key blocks), causal inside each, plus a run of rows that
  // see nothing (their output is 0, LSE -inf).
  const std::int64_t L = lt::small_tests() ? 330 : 1100;
  auto doc = [&](std::int64_t i) {
    return i < L * 3 / 22 ? 0 : i < L / 2 ? 1 : i < L * 7 / 11 ? 2 : 3;
  };
  auto term = [&](std::int64_t i, std::int64_t j) {
    if (i >= L * 2 / 3 && i < L * 2 / 3 + 20) return 0.0;  // fully masked rows
    return doc(i) == doc(j) ? 1.0 : 0.0;
  };
  lt::CaseData d = mask_case(MaskKind::boolean, L, true, 47, term);
  const longattn::RunReport single = run_checked(d, unbudgeted());
  const std::vector<double> whole = d.out.read();
  const longattn::RunReport chunked = run_checked(d, lt::chunked_policy(128, 96));
  EXPECT_GT(chunked.submissions.size(), 1u);
  const std::vector<double> parts = d.out.read();
  double worst = 0;
  for (std::size_t i = 0; i < whole.size(); ++i)
    worst = std::max(worst, std::abs(whole[i] - parts[i]));
  EXPECT_LT(worst, 1e-5) << "chunked vs single pass";
  // A chunked plan always summarizes the mask (a single pass only when it
  // is worth it, attention.cpp), and the plan is costed by what it shows.
  (void)single;
  const double causal = longattn::attention_flops(1, 4, L, L, 64, 64, true);
  EXPECT_LT(chunked.total_flops, 0.8 * causal) << "the documents hide most causal blocks";
}

TEST(MaskBlocks, InfiniteBlocksBesideFiniteBiases) {
  // ALiBi-like slopes where the mask shows keys, -inf blocks elsewhere: the
  // shown blocks are partial (read), the hidden ones skipped, and a block
  // of exact zeros (open) is not read at all.
  const std::int64_t L = lt::small_tests() ? 256 : 768;
  auto term = [](std::int64_t i, std::int64_t j) {
    const std::int64_t bi = i / 128, bj = j / 128;
    if ((bi + bj) % 3 == 1) return -kInf;
    if (bi == bj) return 0.0;
    return -0.05 * static_cast<double>(std::abs(i - j));
  };
  for (bool causal : {false, true}) {
    lt::CaseData d = mask_case(MaskKind::additive, L, causal, causal ? 61 : 60, term);
    run_checked(d, unbudgeted());
    run_checked(d, lt::chunked_policy(192, 64));
  }
}

}  // namespace
