// Every mask kind, broadcast shape, their combination with causal, -inf
// entries and rows or whole tiles that are fully masked.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "test_common.hpp"

namespace {

using longattn::DType;
using lt::Case;
using lt::MaskKind;

const double kInf = std::numeric_limits<double>::infinity();

using Broadcast = std::array<bool, 4>;

TEST(Masks, EveryKindBroadcastAndCausal) {
  std::uint64_t seed = 500;
  for (MaskKind kind : {MaskKind::boolean, MaskKind::additive})
    for (const Broadcast& bc : lt::mask_broadcasts())
      for (bool stride0 : {false, true})
        for (bool causal : {false, true}) {
          Case c;
          c.B = 2, c.Hq = 4, c.Hkv = 2, c.Lq = 23, c.Lk = 70, c.D = 32;
          c.mask = kind, c.mask_broadcast = bc, c.mask_stride0 = stride0, c.causal = causal;
          c.seed = ++seed;
          lt::check_case(c);
        }
}

TEST(Masks, DtypesOfDataAndAdditiveMask) {
  std::uint64_t seed = 900;
  for (DType t : lt::all_dtypes())
    for (DType mt : lt::all_dtypes())
      for (bool causal : {false, true}) {
        Case c;
        c.B = 1, c.Hq = 2, c.Hkv = 1, c.Lq = 49, c.Lk = 129, c.D = 64;
        c.dtype = t, c.mask = MaskKind::additive, c.additive_dtype = mt, c.causal = causal;
        c.mask_broadcast = {true, false, false, false};
        c.seed = ++seed;
        lt::check_case(c);
      }
  for (DType t : lt::all_dtypes()) {
    Case c;
    c.B = 2, c.Hq = 2, c.Hkv = 2, c.Lq = 49, c.Lk = 129, c.D = 64;
    c.dtype = t, c.mask = MaskKind::boolean, c.sinks = true;
    c.seed = ++seed;
    lt::check_case(c);
  }
}

TEST(Masks, MostlyMinusInfinity) {
  // Few visible keys per row: many -inf entries, many fully masked rows.
  for (double drop : {0.9, 0.99})
    for (MaskKind kind : {MaskKind::boolean, MaskKind::additive}) {
      Case c;
      c.B = 2, c.Hq = 2, c.Hkv = 1, c.Lq = 40, c.Lk = 20, c.D = 16;
      c.mask = kind, c.mask_drop = drop;
      c.seed = static_cast<std::uint64_t>(drop * 100) + (kind == MaskKind::boolean);
      lt::check_case(c);
    }
}

TEST(Masks, FullyMaskedRows) {
  const std::vector<std::int64_t> rows{0, 5, 47, 48, 60};
  for (DType t : lt::all_dtypes())
    for (MaskKind kind : {MaskKind::boolean, MaskKind::additive})
      for (bool sinks : {false, true})
        for (bool causal : {false, true}) {
          Case c;
          c.B = 2, c.Hq = 2, c.Hkv = 1, c.Lq = 61, c.Lk = 150, c.D = 32;
          c.dtype = t, c.mask = kind, c.sinks = sinks, c.causal = causal;
          c.mask_broadcast = {true, true, false, false};
          c.mask_drop = 0.1;
          c.seed = 77;
          lt::CaseData d(c);
          const double drop = kind == MaskKind::boolean ? 0.0 : -kInf;
          for (std::int64_t i : rows)
            for (std::int64_t j = 0; j < c.Lk; ++j) d.set_mask(0, 0, i, j, drop);
          lt::run(d);
          const auto r = lt::compare(d);
          EXPECT_TRUE(r.ok) << r.message;
          lt::expect_empty_rows(d, rows);
        }
}

TEST(Masks, FullyMaskedKeyTiles) {
  // Keys [64, 192) hidden from every row, keys [0, 64) hidden from odd rows:
  // whole 64-key tiles see nothing, which must not poison the running state.
  for (DType t : lt::all_dtypes())
    for (MaskKind kind : {MaskKind::boolean, MaskKind::additive})
      for (bool causal : {false, true}) {
        Case c;
        c.Hq = 2, c.Hkv = 2, c.Lq = 50, c.Lk = 260, c.D = 32;
        c.dtype = t, c.mask = kind, c.causal = causal, c.mask_drop = 0.0;
        c.mask_broadcast = {true, true, false, false};
        lt::CaseData d(c);
        const double drop = kind == MaskKind::boolean ? 0.0 : -kInf;
        for (std::int64_t i = 0; i < c.Lq; ++i) {
          for (std::int64_t j = 64; j < 192; ++j) d.set_mask(0, 0, i, j, drop);
          if (i % 2)
            for (std::int64_t j = 0; j < 64; ++j) d.set_mask(0, 0, i, j, drop);
        }
        lt::run(d);
        const auto r = lt::compare(d);
        EXPECT_TRUE(r.ok) << r.message;
      }
}

TEST(Masks, AdditiveMaskDominatesTheLogits) {
  // Large additive values (+-30) decide which keys matter.
  Case c;
  c.B = 1, c.Hq = 2, c.Hkv = 1, c.Lq = 30, c.Lk = 100, c.D = 32;
  c.mask = MaskKind::additive, c.mask_drop = 0.2;
  lt::CaseData d(c);
  for (std::int64_t i = 0; i < c.Lq; ++i)
    for (std::int64_t j = 0; j < c.Lk; ++j)
      if ((i + j) % 7 == 0) d.set_mask(0, 0, i, j, (i + j) % 2 ? 30.0 : -30.0);
  lt::run(d);
  const auto r = lt::compare(d);
  EXPECT_TRUE(r.ok) << r.message;
}

}  // namespace
