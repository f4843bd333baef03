// libFuzzer target: arbitrary tensor views (shapes, strides, dtypes, devices,
// null pointers, masks, sinks, LSE, options) into attention(). The call must
// either succeed or throw a typed longattn::Error whose message starts with
// the operation; it must never crash, hang or read outside the buffers
// (AddressSanitizer checks that).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "longattn/longattn.hpp"

namespace {

struct Reader {
  const std::uint8_t* p;
  std::size_t n;
  std::int64_t in(std::int64_t lo, std::int64_t hi) {
    std::uint32_t v = 0;
    const std::size_t k = n < 4 ? n : 4;
    std::memcpy(&v, p, k);
    p += k;
    n -= k;
    return lo + static_cast<std::int64_t>(v % static_cast<std::uint64_t>(hi - lo + 1));
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace longattn;
  Reader r{data, size};
  // Every view with a small, non-negative shape and stride gets a buffer of
  // exactly its extent (so AddressSanitizer catches a read past it); others
  // get null data, which validation must refuse unless the view is empty.
  auto make = [&](int rank, bool allow_null, std::vector<std::vector<std::uint8_t>>& store) {
    TensorView t;
    t.rank = static_cast<int>(r.in(0, 5) == 0 ? r.in(0, 5) : rank);
    t.dtype = static_cast<DType>(r.in(0, 3));
    t.device = r.in(0, 15) == 0 ? Device::cuda : Device::cpu;
    std::int64_t extent = 1;
    for (int i = 0; i < 4; ++i) {
      const auto u = static_cast<std::size_t>(i);
      t.shape[u] = r.in(0, 9) == 0 ? r.in(-2, 1 << 20) : r.in(0, 6);
      t.strides[u] = r.in(0, 9) == 0 ? r.in(-2, 1 << 20) : r.in(0, 40);
    }
    bool sane = true;
    for (int i = 0; i < t.rank && i < 4; ++i) {
      const auto u = static_cast<std::size_t>(i);
      if (t.shape[u] < 0 || t.strides[u] < 0 || t.shape[u] > 64 || t.strides[u] > 4096)
        sane = false;
      if (sane && t.shape[u] > 0) extent += (t.shape[u] - 1) * t.strides[u];
    }
    if (sane && !(allow_null && r.in(0, 7) == 0)) {
      store.emplace_back(static_cast<std::size_t>(extent * 4 + 16), std::uint8_t{0x3c});
      t.data = store.back().data();
    }
    return t;
  };
  std::vector<std::vector<std::uint8_t>> store;
  store.reserve(16);
  TensorView q = make(4, true, store), k = make(4, true, store), v = make(4, true, store),
             o = make(4, true, store);
  AttentionOptions opt;
  opt.causal = r.in(0, 1) == 1;
  if (r.in(0, 2) == 0) opt.mask = make(4, true, store);
  if (r.in(0, 3) == 0) opt.sinks = make(1, true, store);
  if (r.in(0, 3) == 0) opt.lse = make(3, true, store);
  if (r.in(0, 4) == 0) opt.scale = static_cast<double>(r.in(-3, 3)) / (r.in(0, 1) ? 1.0 : 0.0);
  opt.policy.budget_ms = static_cast<double>(r.in(-1, 50));
  opt.policy.safety = static_cast<double>(r.in(-1, 12)) / 10.0;
  opt.policy.fixed_chunk_keys = r.in(-1, 8);
  opt.threads = static_cast<int>(r.in(-1, 2));
  // Keep the work tiny so the fuzzer stays fast.
  const double work = double(q.shape[0]) * double(q.shape[1]) * double(q.shape[2]) *
                      double(k.shape[2]) * double(q.shape[3] + v.shape[3]);
  if (!(work < 1e6)) return 0;
  try {
    attention(q, k, v, o, opt);
  } catch (const Error& e) {
    const std::string w = e.what();
    if (w.rfind("[longattn::", 0) != 0) __builtin_trap();  // message must start with the operation
  }
  return 0;
}
