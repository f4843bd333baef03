// One million keys with small heads: correctness far beyond any tile or
// chunk size, on the default (budgeted) route and with forced chunking.
#include <gtest/gtest.h>

#include <optional>

#include "test_common.hpp"

namespace {

using longattn::DType;

std::int64_t long_keys() { return lt::small_tests() ? 100'000 : 1'000'000; }

TEST(Long, MillionKeys) {
  for (DType t : {DType::float32, DType::bfloat16}) {
    lt::Case c;
    c.B = 1, c.Hq = 2, c.Hkv = 1, c.Lq = 4, c.Lk = long_keys(), c.D = 32;
    c.dtype = t;
    c.causal = t == DType::bfloat16;  // bottom-right: rows see Lk - 3 .. Lk keys
    c.sinks = t == DType::bfloat16;
    c.qk_std = 1.5;  // sharper softmax, so the result is not just the mean of v
    c.seed = 1'000'000;
    lt::CaseData d(c);

    // float32 over a million keys is judged at the table's allowance for
    // that many keys (ref::tolerance: 1e-4), which fails a kernel that
    // drops one key in a thousand.
    lt::run(d);  // default policy: whatever route the planner picks
    auto r = lt::compare(d);
    EXPECT_TRUE(r.ok) << "default policy: " << r.message;

    d.reset_outputs();
    longattn::AttentionOptions o;
    o.policy = lt::chunked_policy(65'536);
    longattn::RunReport report;
    o.report = &report;
    lt::run(d, o);
    r = lt::compare(d);
    EXPECT_TRUE(r.ok) << "chunks of 65536 keys: " << r.message;
    EXPECT_TRUE(report.completed);
    EXPECT_GE(report.plan.num_dispatches(), static_cast<std::size_t>(c.Lk / 65'536));
  }
}

}  // namespace
