// merge_states(): results over disjoint key sets, merged, equal the result
// over their union; empty parts (LSE = -inf) are the identity.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "test_common.hpp"

namespace {

using longattn::DType;
using longattn::TensorView;
using lt::Case;

const double kInf = std::numeric_limits<double>::infinity();

// A host [B, H, L, X] (or [B, H, L]) tensor we own.
struct Owned {
  std::vector<std::byte> bytes;
  TensorView view;
  Owned(DType t, int rank, std::array<std::int64_t, 4> shape) {
    std::int64_t n = 1;
    for (int d = 0; d < rank; ++d) n *= shape[static_cast<std::size_t>(d)];
    bytes.resize(static_cast<std::size_t>(n) * longattn::dtype_size(t) + 1);
    view = longattn::contiguous(bytes.data(), t, rank, shape);
    const double nan = std::numeric_limits<double>::quiet_NaN();
    for (std::int64_t i = 0; i < n; ++i) lt::store(t, bytes.data(), i, nan);
  }
  std::vector<double> read() const {
    std::vector<double> r(static_cast<std::size_t>(view.numel()));
    for (std::size_t i = 0; i < r.size(); ++i)
      r[i] = lt::load(view.dtype, view.data, static_cast<std::int64_t>(i));
    return r;
  }
};

// Splits the keys of `c` into `parts` random disjoint sets (some possibly
// empty), runs attention on each with an additive mask that hides the other
// keys (sinks go to part 0 only: a sink is one more logit), merges, and
// compares with the reference over all keys.
void check_split_by_mask(const Case& c, int parts, bool force_empty_part, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int> owner(static_cast<std::size_t>(c.Lk));
  for (auto& o : owner) o = static_cast<int>(rng() % static_cast<std::uint64_t>(parts));
  if (force_empty_part)
    for (auto& o : owner)
      if (o == parts - 1) o = 0;

  std::vector<lt::CaseData> data;
  std::vector<longattn::PartialResult> results;
  data.reserve(static_cast<std::size_t>(parts));
  for (int p = 0; p < parts; ++p) {
    Case pc = c;
    pc.mask = lt::MaskKind::additive;
    pc.mask_broadcast = {true, true, true, false};  // [1, 1, 1, Lk]
    pc.sinks = c.sinks && p == 0;
    data.emplace_back(pc);
    lt::CaseData& d = data.back();
    for (std::int64_t j = 0; j < c.Lk; ++j)
      d.set_mask(0, 0, 0, j, owner[static_cast<std::size_t>(j)] == p ? 0.0 : -kInf);
    if (pc.sinks) {  // same sinks as the full case draws
      lt::CaseData full(c);
      for (std::int64_t h = 0; h < c.Hq; ++h)
        d.set_sink(h, full.in.sinks[static_cast<std::size_t>(h)]);
    }
    lt::run(d);
    results.push_back({d.out.view, d.lse.view});
  }

  lt::CaseData full(c);  // the union: reference inputs and the output buffers
  const lt::Tensors t = full.host_views();
  longattn::merge_states(results, t.out, t.lse);
  const auto r = lt::compare(full);
  EXPECT_TRUE(r.ok) << parts << " parts: " << r.message;
}

TEST(MergeStates, RandomKeySplitsEqualTheFullResult) {
  std::uint64_t seed = 1;
  for (DType t : lt::all_dtypes())
    for (int parts : {2, 3, 4})
      for (bool causal : {false, true})
        for (bool sinks : {false, true}) {
          Case c;
          c.B = 2, c.Hq = 4, c.Hkv = 2, c.Lq = 21, c.Lk = 90, c.D = 32, c.Dv = 24;
          c.dtype = t, c.causal = causal, c.sinks = sinks;
          c.seed = ++seed;
          check_split_by_mask(c, parts, parts == 3, seed);
        }
}

// Parts from key slices of k and v (no mask): views over [k0, k1).
TEST(MergeStates, KeySlicesIncludingEmptyOnes) {
  for (DType t : lt::all_dtypes())
    for (std::vector<std::int64_t> cuts :
         {std::vector<std::int64_t>{0, 64, 150}, {0, 0, 70, 150}, {0, 1, 2, 150, 150}}) {
      Case c;
      c.B = 2, c.Hq = 4, c.Hkv = 1, c.Lq = 9, c.Lk = 150, c.D = 16;
      c.dtype = t;
      c.seed = cuts.size();
      lt::CaseData full(c);
      const lt::Tensors ft = full.host_views();
      std::vector<std::unique_ptr<Owned>> outs, lses;
      std::vector<longattn::PartialResult> parts;
      for (std::size_t p = 0; p + 1 < cuts.size(); ++p) {
        TensorView k = ft.k, v = ft.v;
        const std::int64_t k0 = cuts[p], k1 = cuts[p + 1];
        const auto es = static_cast<std::int64_t>(longattn::dtype_size(t));
        k.data = static_cast<std::byte*>(k.data) + k0 * k.strides[2] * es;
        v.data = static_cast<std::byte*>(v.data) + k0 * v.strides[2] * es;
        k.shape[2] = v.shape[2] = k1 - k0;
        // Partials in the case dtype (attention() takes one dtype for q..out).
        outs.push_back(std::make_unique<Owned>(t, 4, std::array<std::int64_t, 4>{2, 4, 9, 16}));
        lses.push_back(
            std::make_unique<Owned>(DType::float32, 3, std::array<std::int64_t, 4>{2, 4, 9, 0}));
        longattn::AttentionOptions o;
        o.lse = lses.back()->view;
        longattn::attention(ft.q, k, v, outs.back()->view, o);
        if (k1 == k0) {
          for (double x : lses.back()->read()) EXPECT_EQ(x, -kInf);
        }
        parts.push_back({outs.back()->view, lses.back()->view});
      }
      longattn::merge_states(parts, ft.out, ft.lse);
      const auto r = lt::compare(full);
      EXPECT_TRUE(r.ok) << cuts.size() - 1 << " slices: " << r.message;
    }
}

TEST(MergeStates, EmptyPartIsExactIdentity) {
  // A = attention over all keys; E = garbage O with LSE = -inf. merge(A, E),
  // merge(E, A) and merge(A) must reproduce A bit for bit.
  for (DType t : lt::all_dtypes()) {
    Case c;
    c.B = 1, c.Hq = 3, c.Hkv = 1, c.Lq = 17, c.Lk = 40, c.D = 8;
    c.dtype = t;
    lt::CaseData a(c);
    lt::run(a);
    Owned eo(t, 4, {1, 3, 17, 8}), el(DType::float32, 3, {1, 3, 17, 0});
    std::mt19937_64 rng(5);
    for (std::int64_t i = 0; i < eo.view.numel(); ++i)
      lt::store(t, eo.bytes.data(), i, static_cast<double>(rng() % 1000) - 500.0);
    for (std::int64_t i = 0; i < el.view.numel(); ++i)
      lt::store(DType::float32, el.bytes.data(), i, -kInf);
    const longattn::PartialResult A{a.out.view, a.lse.view}, E{eo.view, el.view};
    for (const auto& parts :
         {std::vector{A, E}, std::vector{E, A}, std::vector{A}, std::vector{E, A, E}}) {
      Owned mo(t, 4, {1, 3, 17, 8}), ml(DType::float32, 3, {1, 3, 17, 0});
      longattn::merge_states(parts, mo.view, ml.view);
      EXPECT_EQ(mo.read(), a.out.read())
          << longattn::dtype_name(t) << " " << parts.size() << " parts";
      EXPECT_EQ(ml.read(), a.lse.read())
          << longattn::dtype_name(t) << " " << parts.size() << " parts";
    }
    // All parts empty: the row is empty.
    Owned mo(t, 4, {1, 3, 17, 8}), ml(DType::float32, 3, {1, 3, 17, 0});
    longattn::merge_states({E, E}, mo.view, ml.view);
    for (double x : mo.read()) EXPECT_EQ(x, 0.0);
    for (double x : ml.read()) EXPECT_EQ(x, -kInf);
  }
}

TEST(MergeStates, AssociativeAndMixedDtypes) {
  // merge(merge(p0, p1), p2) == merge(p0, p1, p2) within float32 tolerance,
  // with float32 partials merged into a bfloat16 output as well.
  Case c;
  c.B = 1, c.Hq = 2, c.Hkv = 2, c.Lq = 30, c.Lk = 99, c.D = 16;
  lt::CaseData full(c);
  std::vector<std::unique_ptr<lt::CaseData>> pd;
  std::vector<longattn::PartialResult> parts;
  for (int p = 0; p < 3; ++p) {
    Case pc = c;
    pc.mask = lt::MaskKind::additive;
    pc.mask_broadcast = {true, true, true, false};
    pd.push_back(std::make_unique<lt::CaseData>(pc));
    for (std::int64_t j = 0; j < c.Lk; ++j)
      pd.back()->set_mask(0, 0, 0, j, j % 3 == p ? 0.0 : -kInf);
    lt::run(*pd.back());
    parts.push_back({pd.back()->out.view, pd.back()->lse.view});
  }
  Owned o01(DType::float32, 4, {1, 2, 30, 16}), l01(DType::float32, 3, {1, 2, 30, 0});
  longattn::merge_states({parts[0], parts[1]}, o01.view, l01.view);
  const lt::Tensors t = full.host_views();
  longattn::merge_states({{o01.view, l01.view}, parts[2]}, t.out, t.lse);
  auto r = lt::compare(full);
  EXPECT_TRUE(r.ok) << "nested: " << r.message;

  Case bc = c;
  bc.dtype = DType::bfloat16;
  lt::CaseData bf(bc);  // only its output buffers and tolerance are used
  bf.in = full.in;      // the reference over the float32 inputs
  const lt::Tensors bt = bf.host_views();
  longattn::merge_states(parts, bt.out, bt.lse);
  r = lt::compare(bf);
  EXPECT_TRUE(r.ok) << "float32 parts into bfloat16: " << r.message;
}

}  // namespace
