// The chunked path: chunked == reference == single pass for every mask kind,
// sinks and GQA, chunk sizes from 1 key up. Planner properties, reports,
// cancellation and profiles are in tests/planner/.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <sstream>
#include <utility>

#include "test_common.hpp"

namespace {

using longattn::DType;
using longattn::Mode;
using lt::Case;
using lt::MaskKind;

// ---- chunked results -----------------------------------------------------------

void check_chunked_against_single(const Case& c, std::int64_t chunk, std::int64_t rows) {
  lt::CaseData d(c);
  longattn::AttentionOptions single;
  single.policy = lt::single_pass_policy();
  longattn::RunReport single_report;
  single.report = &single_report;
  lt::run(d, single);
  const auto o1 = d.out.read();
  EXPECT_FALSE(single_report.plan.chunked) << c.name();

  d.reset_outputs();
  longattn::AttentionOptions chunked;
  chunked.policy = lt::chunked_policy(chunk, rows);
  longattn::RunReport report;
  chunked.report = &report;
  lt::run(d, chunked);
  const auto r = lt::compare(d);
  EXPECT_TRUE(r.ok) << "chunk " << chunk << " rows " << rows << ": " << r.message;
  if (c.Lk > chunk) {
    EXPECT_TRUE(report.plan.chunked) << c.name() << " chunk " << chunk;
  }
  EXPECT_TRUE(report.completed);
  // Chunked vs single pass, same metric and tolerance.
  const auto m = lt::metric(d.out.read(), o1, c.dv());
  EXPECT_LE(m.err, lt::tolerance(c.dtype))
      << c.name() << " chunk " << chunk << ": chunked vs single pass "
      << m.describe_worst(d.out.read(), o1);
}

TEST(Chunked, ChunkSizesFromOneKey) {
  std::uint64_t seed = 40;
  for (DType t : lt::all_dtypes())
    for (std::int64_t chunk : {1, 2, 7, 63, 64, 65, 100, 199, 200})
      for (bool causal : {false, true}) {
        Case c;
        c.B = 1, c.Hq = 4, c.Hkv = 2, c.Lq = 37, c.Lk = 199, c.D = 32;
        c.dtype = t, c.causal = causal, c.sinks = chunk % 2 == 1;
        c.seed = ++seed;
        check_chunked_against_single(c, chunk, 0);
      }
}

// PyTorch's top-left causal rule (query i sees keys j <= i) on both sides of
// Lq = Lk: with Lk > Lq the last keys are seen by no row (and must not leak
// in through a chunk), with Lq > Lk the last rows see every key.
TEST(Chunked, TopLeftCausal) {
  std::uint64_t seed = 60;
  for (DType t : lt::all_dtypes())
    for (auto [lq, lk] : {std::pair{37, 199}, std::pair{199, 37}, std::pair{64, 64}})
      for (std::int64_t chunk : {1, 16, 50}) {
        Case c;
        c.B = 1, c.Hq = 4, c.Hkv = 2, c.Lq = lq, c.Lk = lk, c.D = 32;
        c.dtype = t, c.causal = true, c.causal_top_left = true, c.sinks = chunk == 16;
        c.seed = ++seed;
        check_chunked_against_single(c, chunk, chunk == 50 ? 8 : 0);
      }
}

TEST(Chunked, QueryGroups) {
  std::uint64_t seed = 80;
  for (std::int64_t rows : {1, 5, 47, 48, 49, 200})
    for (bool causal : {false, true}) {
      Case c;
      c.B = 2, c.Hq = 2, c.Hkv = 1, c.Lq = 130, c.Lk = 150, c.D = 16;
      c.causal = causal, c.sinks = true;
      c.seed = ++seed;
      check_chunked_against_single(c, 33, rows);
    }
}

TEST(Chunked, EveryMaskKindSinksAndGqa) {
  std::uint64_t seed = 120;
  for (MaskKind kind : {MaskKind::none, MaskKind::boolean, MaskKind::additive})
    for (bool causal : {false, true})
      for (std::int64_t ratio : {1, 4, 8})
        for (bool bcast : {false, true}) {
          Case c;
          c.B = 2, c.Hkv = 1, c.Hq = ratio, c.Lq = 45, c.Lk = 140, c.D = 24, c.Dv = 40;
          c.mask = kind, c.causal = causal, c.sinks = ratio != 4;
          c.mask_broadcast = {bcast, bcast, false, false};
          c.mask_drop = 0.5;
          c.seed = ++seed;
          check_chunked_against_single(c, 16, 0);
        }
}

TEST(Chunked, LongerQueriesThanKeysAndMaskedChunks) {
  // Rows that see no key at all, and chunks that are entirely masked for
  // some rows: the running state must stay NaN-free; sinks counted once.
  for (bool sinks : {false, true}) {
    Case c;
    c.B = 1, c.Hq = 2, c.Hkv = 2, c.Lq = 90, c.Lk = 40, c.D = 16;
    c.causal = true, c.sinks = sinks;
    c.seed = 7 + sinks;
    check_chunked_against_single(c, 8, 16);

    Case m = c;
    m.Lq = 30, m.Lk = 120, m.mask = MaskKind::boolean, m.mask_drop = 0.0;
    m.mask_broadcast = {true, true, false, false};
    lt::CaseData d(m);
    for (std::int64_t i = 0; i < m.Lq; ++i)
      for (std::int64_t j = 0; j < m.Lk; ++j)
        if ((j / 10) % 2 == 1 || i % 3 == 0) d.set_mask(0, 0, i, j, 0.0);
    longattn::AttentionOptions o;
    o.policy = lt::chunked_policy(10, 7);
    lt::run(d, o);
    const auto r = lt::compare(d);
    EXPECT_TRUE(r.ok) << r.message;
  }
}

TEST(Chunked, LayoutsAndDims) {
  std::uint64_t seed = 300;
  for (lt::Layout layout :
       {lt::Layout::blhd, lt::Layout::cache_slice, lt::Layout::cache_slice_blhd})
    for (std::int64_t D : {64, 80, 128, 256}) {
      Case c;
      c.B = 1, c.Hq = 4, c.Hkv = 2, c.Lq = 20, c.Lk = 130, c.D = D;
      c.layout = layout, c.causal = true, c.dtype = DType::bfloat16;
      c.seed = ++seed;
      check_chunked_against_single(c, 50, 0);
    }
}

}  // namespace
