// Logit soft-cap (AttentionOptions::softcap, Gemma 2): every dtype against
// the reference, with and without causal, with boolean and additive masks,
// sinks and GQA; logits large enough that tanh saturates; chunked == single
// pass; rows that see nothing; validation of the value; and the CUDA
// backend's refusal.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "longattn/longattn.hpp"
#include "test_common.hpp"

namespace {

using longattn::DType;
using lt::Case;
using lt::MaskKind;

const double kInf = std::numeric_limits<double>::infinity();

TEST(Softcap, EveryDtypeMaskSinksAndGqa) {
  std::uint64_t seed = 3100;
  for (DType t : lt::all_dtypes())
    for (MaskKind kind : {MaskKind::none, MaskKind::boolean, MaskKind::additive})
      for (bool sinks : {false, true})
        for (bool causal : {false, true}) {
          Case c;
          c.B = 2, c.Hq = 8, c.Hkv = 2, c.Lq = 37, c.Lk = 150, c.D = 64, c.Dv = 48;
          c.dtype = t, c.mask = kind, c.sinks = sinks, c.causal = causal;
          c.mask_broadcast = {true, false, false, false};
          c.softcap = 5;
          c.qk_std = 2;  // logits of a few units: the cap bends them, not flattens
          c.seed = ++seed;
          lt::check_case(c);
        }
}

// Logits far past the cap (|s| ~ 100 against a cap of 20): tanh saturates,
// so the softmax is spread over many keys where uncapped it would be one-hot.
TEST(Softcap, LargeLogitsSaturate) {
  std::uint64_t seed = 3200;
  for (DType t : lt::all_dtypes())
    for (bool causal : {false, true}) {
      Case c;
      c.Hq = 4, c.Hkv = 1, c.Lq = 70, c.Lk = 203, c.D = 64;
      c.dtype = t, c.causal = causal;
      c.softcap = 20;
      c.qk_std = 10;
      c.seed = ++seed;
      lt::CaseData d = lt::check_case(c);
      // The cap bounds every logit, so the LSE is at most softcap + log(Lk).
      for (double x : d.lse.read()) EXPECT_LE(x, 20 + std::log(203.0) + 1e-3) << c.name();
    }
}

// A cap too wide to bend anything gives the uncapped result.
TEST(Softcap, WideCapChangesNothing) {
  Case c;
  c.Hq = 2, c.Lq = 9, c.Lk = 70, c.D = 32;
  c.softcap = 1e6f;
  lt::CaseData capped = lt::check_case(c);
  c.softcap = 0;
  lt::CaseData plain = lt::check_case(c);
  const auto a = capped.out.read(), b = plain.out.read();
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-5);
}

TEST(Softcap, ChunkedEqualsSinglePass) {
  std::uint64_t seed = 3300;
  for (DType t : lt::all_dtypes())
    for (bool causal : {false, true}) {
      Case c;
      c.B = 2, c.Hq = 4, c.Hkv = 2, c.Lq = 50, c.Lk = 300, c.D = 32;
      c.dtype = t, c.causal = causal, c.sinks = true, c.mask = MaskKind::additive;
      c.softcap = 8, c.qk_std = 4;
      c.seed = ++seed;
      lt::CaseData single(c), chunked(c);
      longattn::AttentionOptions o;
      o.policy = lt::single_pass_policy();
      lt::run(single, o);
      o.policy = lt::chunked_policy(64, 16);
      lt::run(chunked, o);
      for (lt::CaseData* d : {&single, &chunked}) {
        const auto r = lt::compare(*d);
        EXPECT_TRUE(r.ok) << r.message;
      }
      const auto a = single.out.read(), b = chunked.out.read();
      for (std::size_t i = 0; i < a.size(); ++i)
        ASSERT_NEAR(a[i], b[i], lt::tolerance(t)) << c.name() << " element " << i;
    }
}

// Rows that see no key stay O = 0, LSE = -inf (or the sink), never NaN: the
// cap must not turn a dropped key's -inf into a finite -softcap.
TEST(Softcap, FullyMaskedRows) {
  for (DType t : lt::all_dtypes())
    for (bool sinks : {false, true})
      for (bool chunked : {false, true}) {
        Case c;
        c.Hq = 2, c.Hkv = 1, c.Lq = 60, c.Lk = 20, c.D = 16;
        c.dtype = t, c.sinks = sinks, c.causal = true;  // bottom-right: rows 0..39 see nothing
        c.softcap = 3;
        c.seed = 41;
        longattn::AttentionOptions o;
        if (chunked) o.policy = lt::chunked_policy(8, 7);
        lt::CaseData d = lt::check_case(c, o);
        lt::expect_empty_rows(d, lt::first_rows(40));
      }
}

TEST(Softcap, InvalidValues) {
  Case c;
  c.Lq = 3, c.Lk = 5, c.D = 8;
  lt::CaseData d(c);
  const lt::Tensors t = d.host_views();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (float bad : {-1.f, -0.5f, nan, inf, -inf, std::numeric_limits<float>::max()}) {
    longattn::AttentionOptions o = d.options(t);
    o.softcap = bad;
    for (bool plan : {false, true}) {
      try {
        if (plan)
          (void)longattn::plan_attention(t.q, t.k, t.v, t.out, o);
        else
          longattn::attention(t.q, t.k, t.v, t.out, o);
        ADD_FAILURE() << "softcap = " << bad << ": no exception";
      } catch (const longattn::InvalidArgument& e) {
        const std::string msg = e.what();
        EXPECT_EQ(msg.rfind(plan ? "[longattn::plan_attention] " : "[longattn::attention] ", 0), 0u)
            << msg;
        EXPECT_NE(msg.find("softcap = "), std::string::npos) << msg;
      }
    }
  }
  // 0 (off) and a positive cap are valid.
  for (float ok : {0.f, 1e-30f, 30.f}) {
    longattn::AttentionOptions o = d.options(t);
    o.softcap = ok;
    EXPECT_NO_THROW(longattn::attention(t.q, t.k, t.v, t.out, o)) << "softcap = " << ok;
  }
}

}  // namespace
