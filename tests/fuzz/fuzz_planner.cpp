// libFuzzer target: random shapes, profiles and policies through
// plan_attention(); every plan must satisfy the invariants of
// tests/planner/plan_invariants.hpp, and the only acceptable failure is a
// typed longattn::Error.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "longattn/longattn.hpp"
#include "plan_invariants.hpp"

namespace {

struct Reader {
  const std::uint8_t* p;
  std::size_t n;
  template <class T>
  T take() {
    T v{};
    const std::size_t k = n < sizeof(T) ? n : sizeof(T);
    std::memcpy(&v, p, k);
    p += k;
    n -= k;
    return v;
  }
  std::int64_t in(std::int64_t lo, std::int64_t hi) {
    const auto r = take<std::uint32_t>();
    return lo + static_cast<std::int64_t>(r % static_cast<std::uint64_t>(hi - lo + 1));
  }
  double real(double lo, double hi) { return lo + (hi - lo) * (take<std::uint16_t>() / 65535.0); }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace longattn;
  Reader r{data, size};
  const std::int64_t Hkv = r.in(1, 8);
  plantest::Shape s{r.in(1, 4),   Hkv * r.in(1, 8), r.in(1, 1 << 18), r.in(0, 1 << 18),
                    r.in(1, 256), r.in(1, 256),     r.in(0, 1) == 1};
  DeviceProfile prof;
  prof.default_gflops = std::pow(10.0, r.real(-1, 6));
  prof.dispatch_overhead_ms = r.real(0, 1);
  prof.submission_overhead_ms = r.real(0, 1);
  prof.state_gbps = std::pow(10.0, r.real(-1, 4));
  prof.fill_rows = r.in(1, 1 << 16);
  prof.query_tile = r.in(1, 256);
  prof.key_tile = r.in(1, 256);
  Policy pol;
  pol.budget_ms = r.in(0, 3) == 0 ? 0 : std::pow(10.0, r.real(-2, 4));
  pol.safety = r.real(0.05, 1.0);
  pol.workspace_limit_bytes =
      r.in(0, 1) ? (std::int64_t{1} << r.in(8, 31)) : (std::int64_t{1} << 30);
  const int mode = static_cast<int>(r.in(0, 5));
  if (mode == 1) pol.chunk_threshold_keys = r.in(1, 1 << 18);
  if (mode == 2) pol.fixed_chunk_keys = r.in(1, 1 << 16);
  if (mode == 3) pol.fixed_query_rows = r.in(1, 1 << 12);

  AttentionOptions o;
  o.causal = s.causal;
  o.policy = pol;
  o.profile = &prof;
  const DType t = static_cast<DType>(r.in(0, 2));
  Plan plan;
  try {
    plan = plan_attention(contiguous(nullptr, t, {s.B, s.Hq, s.Lq, s.D}),
                          contiguous(nullptr, t, {s.B, Hkv, s.Lk, s.D}),
                          contiguous(nullptr, t, {s.B, Hkv, s.Lk, s.Dv}),
                          contiguous(nullptr, t, {s.B, s.Hq, s.Lq, s.Dv}), o);
  } catch (const Error&) {
    return 0;
  }
  if (mode == 2 || mode == 3) pol.budget_ms = 0;  // fixed splits may exceed the budget by request
  const std::string err = plantest::check_plan(s, plan, pol, prof.key_tile);
  if (!err.empty()) {
    std::fprintf(stderr, "invalid plan: %s\n", err.c_str());
    __builtin_trap();
  }
  return 0;
}
