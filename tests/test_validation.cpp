// Every invalid input gets a typed error whose message starts with the
// operation and names the argument (and, where there is one, its value).
// Validation must happen before anything is written.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <utility>
#include <vector>

#include "test_common.hpp"

namespace {

using longattn::AttentionOptions;
using longattn::DType;
using longattn::ErrorCode;
using lt::Tensors;

struct BadInput {
  const char* what;
  std::function<void(Tensors&, AttentionOptions&)> mutate;
  std::string expect;  // substring of the message: the argument name (and value)
  ErrorCode code = ErrorCode::invalid_argument;
  bool plan_checks = true;  // plan_attention() reads no data, so null data is fine there
};

lt::Case base_case() {
  lt::Case c;
  c.B = 2, c.Hq = 4, c.Hkv = 2, c.Lq = 5, c.Lk = 7, c.D = 8, c.Dv = 6;
  c.mask = lt::MaskKind::boolean;
  c.sinks = true;
  return c;
}

std::byte* bytes(const longattn::TensorView& t) { return static_cast<std::byte*>(t.data); }

void expect_error(const std::function<void()>& call, const std::string& op,
                  const std::string& expect, ErrorCode code, const std::string& what) {
  try {
    call();
    ADD_FAILURE() << what << ": no exception";
  } catch (const longattn::Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(e.code(), code) << what << ": " << msg;
    EXPECT_EQ(msg.rfind("[" + op + "] ", 0), 0u) << what << ": " << msg;
    EXPECT_NE(msg.find(expect), std::string::npos)
        << what << ": message does not name \"" << expect << "\": " << msg;
    if (code == ErrorCode::invalid_argument) {
      EXPECT_NE(dynamic_cast<const longattn::InvalidArgument*>(&e), nullptr) << what;
    }
  } catch (const std::exception& e) {
    ADD_FAILURE() << what << ": not a longattn::Error: " << e.what();
  }
}

std::vector<BadInput> bad_inputs() {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  using T = Tensors&;
  using O = AttentionOptions&;
  return {
      // Ranks and shapes.
      {"q rank 3", [](T t, O) { t.q.rank = 3; }, "q.rank = 3"},
      {"k rank 5", [](T t, O) { t.k.rank = 5; }, "k.rank = 5"},
      {"v rank 0", [](T t, O) { t.v.rank = 0; }, "v.rank = 0"},
      {"out rank 2", [](T t, O) { t.out.rank = 2; }, "out.rank = 2"},
      {"batch mismatch", [](T t, O) { t.k.shape[0] = 1; }, "k.shape[0] = 1"},
      {"v keys mismatch", [](T t, O) { t.v.shape[2] = 6; }, "v.shape[2] = 6"},
      {"v heads mismatch", [](T t, O) { t.v.shape[1] = 1; }, "v.shape[1] = 1"},
      {"Hq % Hkv",
       [](T t, O) {
         t.k.shape[1] = 3;
         t.v.shape[1] = 3;
       },
       "k.shape[1] = 3"},
      {"Hkv = 0",
       [](T t, O) {
         t.k.shape[1] = 0;
         t.v.shape[1] = 0;
       },
       "k.shape[1] = 0"},
      {"D mismatch", [](T t, O) { t.k.shape[3] = 9; }, "k.shape[3] = 9"},
      {"out Dv mismatch", [](T t, O) { t.out.shape[3] = 8; }, "out.shape[3] = 8"},
      {"out Lq mismatch", [](T t, O) { t.out.shape[2] = 4; }, "out.shape[2] = 4"},
      {"out heads mismatch", [](T t, O) { t.out.shape[1] = 2; }, "out.shape[1] = 2"},
      {"D = 0",
       [](T t, O) {
         t.q.shape[3] = 0;
         t.k.shape[3] = 0;
       },
       "q.shape[3] = 0"},
      {"negative size", [](T t, O) { t.q.shape[2] = -1; }, "q.shape[2] = -1"},
      {"negative stride", [](T t, O) { t.k.strides[2] = -8; }, "k.strides[2] = -8"},
      {"negative out stride", [](T t, O) { t.out.strides[0] = -1; }, "out.strides[0] = -1"},
      {"out stride 0 aliases rows", [](T t, O) { t.out.strides[2] = 0; }, "out.strides[2] = 0"},
      // Dtypes.
      {"k dtype", [](T t, O) { t.k.dtype = DType::float16; }, "k.dtype = "},
      {"v dtype", [](T t, O) { t.v.dtype = DType::bfloat16; }, "v.dtype = "},
      {"out dtype", [](T t, O) { t.out.dtype = DType::float16; }, "out.dtype = "},
      {"bool q",
       [](T t, O) {
         for (auto* x : {&t.q, &t.k, &t.v, &t.out}) x->dtype = DType::boolean;
       },
       "q.dtype = "},
      // Null data with a non-zero size.
      {"null q", [](T t, O) { t.q.data = nullptr; }, "q.data", ErrorCode::invalid_argument, false},
      {"null k", [](T t, O) { t.k.data = nullptr; }, "k.data", ErrorCode::invalid_argument, false},
      {"null v", [](T t, O) { t.v.data = nullptr; }, "v.data", ErrorCode::invalid_argument, false},
      {"null out", [](T t, O) { t.out.data = nullptr; }, "out.data", ErrorCode::invalid_argument,
       false},
      // Outputs aliasing inputs.
      {"out == q", [](T t, O) { t.out.data = t.q.data; }, "overlaps q"},
      {"out inside k", [](T t, O) { t.out.data = bytes(t.k) + 4 * 8; }, "overlaps k"},
      {"out overlaps the end of v",
       [](T t, O) { t.out.data = bytes(t.v) + 4 * (2 * 2 * 7 * 6 - 1); }, "overlaps v"},
      {"out == mask", [](T t, O o) { t.out.data = o.mask.data; }, "overlaps mask"},
      {"out == sinks", [](T t, O o) { t.out.data = o.sinks.data; }, "overlaps sinks"},
      {"lse == q", [](T t, O o) { o.lse.data = t.q.data; }, "lse overlaps"},
      {"lse inside out", [](T t, O o) { o.lse.data = bytes(t.out) + 4 * 3; }, "lse overlaps out"},
      // Masks.
      {"mask not broadcastable", [](T, O o) { o.mask.shape[2] = 3; }, "mask.shape[2] = 3"},
      {"mask keys not broadcastable", [](T, O o) { o.mask.shape[3] = 6; }, "mask.shape[3] = 6"},
      {"mask rank 2", [](T, O o) { o.mask.rank = 2; }, "mask.rank = 2"},
      {"mask null data", [](T, O o) { o.mask.data = nullptr; }, "mask.data",
       ErrorCode::invalid_argument, false},
      {"mask negative stride", [](T, O o) { o.mask.strides[3] = -1; }, "mask.strides[3] = -1"},
      // Sinks.
      {"sinks shape", [](T, O o) { o.sinks.shape[0] = 5; }, "sinks.shape[0] = 5"},
      {"sinks dtype", [](T, O o) { o.sinks.dtype = DType::float16; }, "sinks.dtype = "},
      {"sinks rank",
       [](T, O o) {
         o.sinks.rank = 2;
         o.sinks.shape[1] = 1;
       },
       "sinks.rank = 2"},
      // LSE.
      {"lse shape", [](T, O o) { o.lse.shape[2] = 6; }, "lse.shape[2] = 6"},
      {"lse heads", [](T, O o) { o.lse.shape[1] = 1; }, "lse.shape[1] = 1"},
      {"lse dtype", [](T, O o) { o.lse.dtype = DType::bfloat16; }, "lse.dtype = "},
      {"lse rank",
       [](T, O o) {
         o.lse.rank = 4;
         o.lse.shape[3] = 1;
       },
       "lse.rank = 4"},
      {"lse stride 0", [](T, O o) { o.lse.strides[2] = 0; }, "lse.strides[2] = 0"},
      // Sizes whose element or byte counts overflow int64 (the data is never read).
      {"k elements overflow int64",
       [](T t, O o) {
         o.mask = {};
         t.k.shape[2] = t.v.shape[2] = std::int64_t{1} << 62;
       },
       "k of shape"},
      {"k extent overflows int64",
       [](T t, O o) {
         o.mask = {};
         t.k.shape[2] = t.v.shape[2] = std::int64_t{1} << 40;
         t.k.strides[2] = std::int64_t{1} << 30;
       },
       "k of shape"},
      {"k bytes overflow int64",
       [](T t, O o) {
         // 2^62 elements (fits int64) of 4 bytes (does not).
         o.mask = {};
         const std::int64_t L = std::int64_t{1} << 57;
         t.k.shape[2] = t.v.shape[2] = L;
         t.k.strides = {2 * L * 8, L * 8, 8, 1};
         t.v.strides = {2 * L * 6, L * 6, 6, 1};
       },
       "k of shape"},
      // Scale, policy, threads.
      {"scale NaN", [nan](T, O o) { o.scale = nan; }, "scale = nan"},
      {"scale inf", [inf](T, O o) { o.scale = inf; }, "scale = inf"},
      // Finite as a double, infinite in the kernels' float32: NaN output.
      {"scale 1e39", [](T, O o) { o.scale = 1e39; }, "scale = 1e+39"},
      {"safety 0", [](T, O o) { o.policy.safety = 0; }, "policy.safety = 0"},
      {"safety 1.5", [](T, O o) { o.policy.safety = 1.5; }, "policy.safety = 1.5"},
      {"safety NaN", [nan](T, O o) { o.policy.safety = nan; }, "policy.safety = nan"},
      {"budget < 0", [](T, O o) { o.policy.budget_ms = -1; }, "policy.budget_ms = -1"},
      {"budget NaN", [nan](T, O o) { o.policy.budget_ms = nan; }, "policy.budget_ms = nan"},
      {"budget inf", [inf](T, O o) { o.policy.budget_ms = inf; }, "policy.budget_ms = inf"},
      {"workspace < 0", [](T, O o) { o.policy.workspace_limit_bytes = -1; },
       "policy.workspace_limit_bytes = -1"},
      {"chunk keys < 0", [](T, O o) { o.policy.fixed_chunk_keys = -5; },
       "policy.fixed_chunk_keys = -5"},
      {"query rows < 0", [](T, O o) { o.policy.fixed_query_rows = -5; },
       "policy.fixed_query_rows = -5"},
      {"threshold < 0", [](T, O o) { o.policy.chunk_threshold_keys = -1; },
       "policy.chunk_threshold_keys = -1"},
      {"threads < 0", [](T, O o) { o.threads = -2; }, "threads = -2"},
      // 65536 threads crashed the OpenMP runtime (SIGSEGV) before this check.
      {"threads absurd", [](T, O o) { o.threads = 65536; }, "threads = 65536"},
      {"causal_align not an enumerator",
       [](T, O o) {
         o.causal = true;
         o.causal_align = static_cast<longattn::CausalAlign>(7);
       },
       "causal_align = 7"},
      // Devices.
      {"k on another device", [](T t, O) { t.k.device = longattn::Device::cuda; }, "k.device"},
      {"lse on another device", [](T, O o) { o.lse.device = longattn::Device::cuda; },
       "lse.device"},
      {"mask on another device", [](T, O o) { o.mask.device = longattn::Device::cuda; },
       "mask.device"},
  };
}

TEST(Validation, EveryBadInputIsNamed) {
  for (const BadInput& bad : bad_inputs()) {
    lt::CaseData d(base_case());
    Tensors t = d.host_views();
    AttentionOptions o = d.options(t);
    bad.mutate(t, o);
    expect_error([&] { longattn::attention(t.q, t.k, t.v, t.out, o); }, "longattn::attention",
                 bad.expect, bad.code, bad.what);
    // Nothing was written: outputs still hold their NaN poison and guards.
    for (double x : d.out.read()) ASSERT_TRUE(std::isnan(x)) << bad.what << ": out was written";
    for (double x : d.lse.read()) ASSERT_TRUE(std::isnan(x)) << bad.what << ": lse was written";
    // plan_attention() validates the same way.
    if (bad.plan_checks)
      expect_error([&] { (void)longattn::plan_attention(t.q, t.k, t.v, t.out, o); },
                   "longattn::plan_attention", bad.expect, bad.code,
                   std::string("plan: ") + bad.what);
  }
}

TEST(Validation, TheBaseCaseIsValid) {
  lt::CaseData d(base_case());
  lt::run(d);
  const auto r = lt::compare(d);
  EXPECT_TRUE(r.ok) << r.message;
}

TEST(Validation, HeadDimLimits) {
  for (auto [D, Dv, expect] :
       {std::tuple<std::int64_t, std::int64_t, const char*>{257, 8, "q.shape[3] = 257"},
        {8, 300, "v.shape[3] = 300"}}) {
    lt::Case c = base_case();
    c.D = D, c.Dv = Dv;
    lt::CaseData d(c);
    const Tensors t = d.host_views();
    const AttentionOptions o = d.options(t);
    expect_error([&] { longattn::attention(t.q, t.k, t.v, t.out, o); }, "longattn::attention",
                 expect, ErrorCode::invalid_argument, expect);
  }
}

TEST(Validation, LegalEdgeValuesAreAccepted) {
  // Zero and negative scales are finite, hence legal; empty batches and
  // null data with zero elements are fine.
  for (double scale : {0.0, -0.5}) {
    lt::Case c = base_case();
    c.scale = scale;
    lt::check_case(c);
  }
  lt::Case c = base_case();
  c.B = 0;
  lt::CaseData d(c);
  lt::Tensors t = d.host_views();
  AttentionOptions o = d.options(t);
  t.q.data = t.k.data = t.v.data = t.out.data = o.lse.data = nullptr;
  o.mask = {};
  EXPECT_NO_THROW(longattn::attention(t.q, t.k, t.v, t.out, o));
}

TEST(Validation, EmptyQueriesAndBatchesRunOnEveryRoute) {
  // Lq = 0 was refused ("out.strides[1] = 0 ... would alias"), and B = 0 on
  // the chunked route divided by zero in the planner (SIGFPE). Views come
  // from contiguous(), as a caller's would; real (non-null) buffers.
  std::vector<float> buf(4096, 1.f);
  for (auto [B, Lq] : {std::pair<std::int64_t, std::int64_t>{1, 0}, {0, 5}, {0, 0}}) {
    for (bool chunked : {false, true}) {
      const auto q = longattn::contiguous(buf.data(), DType::float32, {B, 4, Lq, 8});
      const auto k = longattn::contiguous(buf.data() + 1024, DType::float32, {B, 2, 7, 8});
      const auto out = longattn::contiguous(buf.data() + 2048, DType::float32, {B, 4, Lq, 8});
      const auto lse = longattn::contiguous(buf.data() + 3072, DType::float32, 3, {B, 4, Lq, 0});
      AttentionOptions o;
      o.causal = true;
      o.lse = lse;
      if (chunked) o.policy = lt::chunked_policy(4, 1);
      longattn::RunReport rep;
      o.report = &rep;
      EXPECT_NO_THROW(longattn::attention(q, k, k, out, o)) << "B=" << B << " Lq=" << Lq;
      EXPECT_TRUE(rep.completed);
      EXPECT_EQ(rep.total_flops, 0);
      for (std::size_t i = 2048; i < buf.size(); ++i)
        ASSERT_EQ(buf[i], 1.f) << "nothing may be written, index " << i;
    }
  }
}

TEST(Validation, ContiguousViewsOfEmptyAndHugeShapes) {
  // Empty dims step over one element, as PyTorch's strides do, so an empty
  // tensor never looks aliased.
  const auto e = longattn::contiguous(nullptr, DType::float32, {2, 32, 0, 128});
  EXPECT_EQ(e.strides, (std::array<std::int64_t, 4>{32 * 128, 128, 128, 1}));
  // A shape whose strides overflow int64 saturates (it used to be signed
  // overflow, undefined behaviour) and is refused by name.
  const std::int64_t big = std::numeric_limits<std::int64_t>::max();
  const auto q = longattn::contiguous(nullptr, DType::float32, {1, 32, big, 128});
  const auto k = longattn::contiguous(nullptr, DType::float32, {1, 8, 16, 128});
  EXPECT_EQ(q.strides[0], big);
  try {
    (void)longattn::plan_attention(q, k, k, q);
    FAIL() << "expected InvalidArgument";
  } catch (const longattn::InvalidArgument& err) {
    EXPECT_NE(std::string(err.what()).find("q of shape"), std::string::npos) << err.what();
  }
}

TEST(Validation, CudaBackendOnHostMemory) {
  lt::CaseData d(base_case());
  const Tensors t = d.host_views();
  AttentionOptions o = d.options(t);
  o.backend = longattn::BackendKind::cuda;
  expect_error([&] { longattn::attention(t.q, t.k, t.v, t.out, o); }, "longattn::attention",
               "backend", ErrorCode::invalid_argument, "backend = cuda on host memory");
}

TEST(Validation, MergeStatesArguments) {
  lt::Case c = base_case();
  c.mask = lt::MaskKind::none;
  lt::CaseData a(c), b(c), out(c);
  lt::run(a);
  lt::run(b);
  const longattn::PartialResult pa{a.out.view, a.lse.view}, pb{b.out.view, b.lse.view};
  const std::string op = "longattn::merge_states";
  auto call = [&](std::vector<longattn::PartialResult> parts, longattn::TensorView o,
                  longattn::TensorView l) { return [=] { longattn::merge_states(parts, o, l); }; };
  expect_error(call({}, out.out.view, out.lse.view), op, "parts", ErrorCode::invalid_argument,
               "no parts");
  auto bad = pb;
  bad.o.shape[2] = 4;
  expect_error(call({pa, bad}, out.out.view, out.lse.view), op, "parts[1].o.shape[2] = 4",
               ErrorCode::invalid_argument, "part shape");
  bad = pb;
  bad.lse.dtype = DType::float16;
  expect_error(call({pa, bad}, out.out.view, out.lse.view), op, "parts[1].lse.dtype",
               ErrorCode::invalid_argument, "part lse dtype");
  bad = pa;
  bad.lse.shape[1] = 3;
  expect_error(call({bad, pb}, out.out.view, out.lse.view), op, "parts[0].lse.shape[1] = 3",
               ErrorCode::invalid_argument, "part lse shape");
  auto bad_lse = out.lse.view;
  bad_lse.shape[2] = 1;
  expect_error(call({pa, pb}, out.out.view, bad_lse), op, "out_lse.shape[2] = 1",
               ErrorCode::invalid_argument, "out_lse shape");
  expect_error(call({pa, pb}, a.out.view, out.lse.view), op, "aliases out",
               ErrorCode::invalid_argument, "out aliases a part");
  bad = pa;
  bad.o.data = nullptr;
  expect_error(call({bad, pb}, out.out.view, out.lse.view), op, "parts[0].o.data",
               ErrorCode::invalid_argument, "null part");
}

}  // namespace
