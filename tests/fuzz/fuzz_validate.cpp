// libFuzzer target: arbitrary tensor views (shapes, strides, dtypes, devices,
// null pointers, masks, sinks, LSE, options) into attention(). It must never
// crash, hang or read outside the buffers (AddressSanitizer checks that), and
//  - a call that throws throws a typed longattn::Error whose message starts
//    with "[longattn::attention] "; an InvalidArgument or Unsupported names
//    the argument at fault (q, k, v, out, mask, sinks, lse, scale, policy.*,
//    threads, backend);
//  - a call that returns had arguments that satisfy the documented contract
//    (README "What is accepted"), checked here independently of
//    src/core/validate.cpp, and wrote its output: every input element is the
//    same byte pattern, so each output row is that value of v (or 0 for a row
//    that sees no key), never the pattern the output was filled with.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <regex>
#include <string>
#include <vector>

#include "longattn/longattn.hpp"

namespace {

using namespace longattn;

constexpr std::uint8_t kInputByte = 0x3c;   // finite in every dtype
constexpr std::uint8_t kOutputByte = 0x7f;  // huge or NaN in every dtype

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

[[noreturn]] void fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "fuzz_validate: %s: %s\n", what, detail.c_str());
  __builtin_trap();
}

bool is_float(DType t) {
  return t == DType::float32 || t == DType::float16 || t == DType::bfloat16;
}

double load(const void* base, DType t, std::int64_t i) {
  const auto* b = static_cast<const std::uint8_t*>(base);
  if (t == DType::float32) {
    float f;
    std::memcpy(&f, b + i * 4, 4);
    return f;
  }
  std::uint16_t h;
  std::memcpy(&h, b + i * 2, 2);
  if (t == DType::bfloat16) {
    const std::uint32_t w = std::uint32_t{h} << 16;
    float f;
    std::memcpy(&f, &w, 4);
    return f;
  }
  // IEEE half.
  const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
  const double sign = (h & 0x8000) ? -1.0 : 1.0;
  if (e == 0) return sign * std::ldexp(m, -24);
  if (e == 31) return m ? NAN : sign * INFINITY;
  return sign * std::ldexp(1024 + m, e - 25);
}

// The documented contract, written from the README, not from validate.cpp.
// Returns "" when the arguments are acceptable, else the first violation.
std::string contract(const TensorView& q, const TensorView& k, const TensorView& v,
                     const TensorView& o, const AttentionOptions& opt) {
  for (const TensorView* t : {&q, &k, &v, &o}) {
    if (t->rank != 4) return "rank != 4";
    for (int i = 0; i < 4; ++i)
      if (t->shape[std::size_t(i)] < 0 || t->strides[std::size_t(i)] < 0)
        return "negative shape or stride";
    if (t->device != Device::cpu) return "device is not cpu (this build has no CUDA backend)";
    if (t->numel() > 0 && t->data == nullptr) return "null data for a non-empty tensor";
    if (t->dtype != q.dtype) return "dtypes differ";
  }
  if (!is_float(q.dtype)) return "q.dtype is not a float type";
  const auto B = q.shape[0], Hq = q.shape[1], Lq = q.shape[2], D = q.shape[3];
  const auto Hkv = k.shape[1], Lk = k.shape[2], Dv = v.shape[3];
  if (k.shape[0] != B || v.shape[0] != B || o.shape[0] != B) return "batch differs";
  if (k.shape[3] != D || v.shape[1] != Hkv || v.shape[2] != Lk) return "k/v shapes differ";
  if (o.shape[1] != Hq || o.shape[2] != Lq || o.shape[3] != Dv) return "out shape differs";
  if (Hkv < 1 || Hq < 1 || Hq % Hkv != 0) return "Hkv does not divide Hq";
  if (D < 1 || D > 256 || Dv < 1 || Dv > 256) return "head dim outside [1, 256]";
  if (o.numel() > 0)
    for (int i = 0; i < 4; ++i)
      if (o.shape[std::size_t(i)] > 1 && o.strides[std::size_t(i)] == 0)
        return "out aliases itself";
  if (opt.mask.present()) {
    const TensorView& m = opt.mask;
    if (m.rank != 4 || m.device != Device::cpu) return "mask rank or device";
    if (m.dtype != DType::boolean && !is_float(m.dtype)) return "mask dtype";
    const std::int64_t full[4] = {B, Hq, Lq, Lk};
    for (int i = 0; i < 4; ++i) {
      const auto u = std::size_t(i);
      if (m.shape[u] < 0 || m.strides[u] < 0) return "negative mask shape or stride";
      if (m.shape[u] != 1 && m.shape[u] != full[i]) return "mask does not broadcast";
    }
    if (m.numel() > 0 && m.data == nullptr) return "null mask data";
  }
  if (opt.sinks.present()) {
    const TensorView& s = opt.sinks;
    if (s.rank != 1 || s.dtype != DType::float32 || s.device != Device::cpu) return "sinks kind";
    if (s.shape[0] != Hq || s.strides[0] < 0) return "sinks shape";
    if (s.numel() > 0 && s.data == nullptr) return "null sinks data";
  }
  if (opt.lse.present()) {
    const TensorView& l = opt.lse;
    if (l.rank != 3 || l.dtype != DType::float32 || l.device != Device::cpu) return "lse kind";
    if (l.shape[0] != B || l.shape[1] != Hq || l.shape[2] != Lq) return "lse shape";
    for (int i = 0; i < 3; ++i) {
      const auto u = std::size_t(i);
      if (l.strides[u] < 0) return "negative lse stride";
      if (l.numel() > 0 && l.shape[u] > 1 && l.strides[u] == 0) return "lse aliases itself";
    }
    if (l.numel() > 0 && l.data == nullptr) return "null lse data";
  }
  if (opt.scale && !std::isfinite(*opt.scale)) return "scale not finite";
  const Policy& p = opt.policy;
  if (!(p.budget_ms >= 0) || !std::isfinite(p.budget_ms)) return "policy.budget_ms";
  if (!(p.safety > 0 && p.safety <= 1)) return "policy.safety";
  if (p.chunk_threshold_keys < 0 || p.workspace_limit_bytes < 0 || p.fixed_chunk_keys < 0 ||
      p.fixed_query_rows < 0)
    return "negative policy size";
  if (opt.threads < 0) return "threads";
  if (opt.causal_align != CausalAlign::bottom_right && opt.causal_align != CausalAlign::top_left)
    return "causal_align";
  if (opt.window_left < -1 || opt.window_right < -1) return "window below -1";
  if (!std::isfinite(opt.softcap) || opt.softcap < 0) return "softcap";
  return "";
}

// After a successful call every output element is v's value (the softmax
// weights of a row sum to 1 and v is constant), 0 for a row that sees no key,
// or with sinks something in between; never the output's fill pattern.
void check_output(const TensorView& v, const TensorView& o, const AttentionOptions& opt) {
  if (o.numel() == 0 || o.numel() > (1 << 16)) return;
  const double vc = v.numel() > 0 ? load(v.data, v.dtype, 0) : 0.0;
  const bool sinks = opt.sinks.present();
  for (std::int64_t b = 0; b < o.shape[0]; ++b)
    for (std::int64_t h = 0; h < o.shape[1]; ++h)
      for (std::int64_t i = 0; i < o.shape[2]; ++i)
        for (std::int64_t d = 0; d < o.shape[3]; ++d) {
          const std::int64_t at =
              b * o.strides[0] + h * o.strides[1] + i * o.strides[2] + d * o.strides[3];
          const double x = load(o.data, o.dtype, at);
          const bool ok = sinks ? (x >= 0 && x <= vc * (1 + 1e-2))
                                : (x == 0 || std::fabs(x - vc) <= 1e-2 * std::fabs(vc));
          if (!ok)
            fail("output not written as expected",
                 "out[" + std::to_string(b) + "," + std::to_string(h) + "," + std::to_string(i) +
                     "," + std::to_string(d) + "] = " + std::to_string(x) +
                     ", v = " + std::to_string(vc) + (sinks ? " (sinks)" : ""));
        }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Reader r{data, size};
  // Every view with a small, non-negative shape and stride gets a buffer of
  // exactly its extent (so AddressSanitizer catches a read past it); others
  // get null data, which validation must refuse unless the view is empty.
  auto make = [&](int rank, bool allow_null, std::uint8_t fill,
                  std::vector<std::vector<std::uint8_t>>& store) {
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
      store.emplace_back(static_cast<std::size_t>(extent * 4 + 16), fill);
      t.data = store.back().data();
    }
    return t;
  };
  std::vector<std::vector<std::uint8_t>> store;
  store.reserve(16);
  TensorView q = make(4, true, kInputByte, store), k = make(4, true, kInputByte, store),
             v = make(4, true, kInputByte, store), o = make(4, true, kOutputByte, store);
  AttentionOptions opt;
  opt.causal = r.in(0, 1) == 1;
  if (r.in(0, 2) == 0) opt.mask = make(4, true, kInputByte, store);
  if (r.in(0, 3) == 0) opt.sinks = make(1, true, kInputByte, store);
  if (r.in(0, 3) == 0) opt.lse = make(3, true, kOutputByte, store);
  if (r.in(0, 4) == 0) opt.scale = static_cast<double>(r.in(-3, 3)) / (r.in(0, 1) ? 1.0 : 0.0);
  opt.policy.budget_ms = static_cast<double>(r.in(-1, 50));
  opt.policy.safety = static_cast<double>(r.in(-1, 12)) / 10.0;
  opt.policy.fixed_chunk_keys = r.in(-1, 8);
  opt.policy.fixed_query_rows = r.in(-1, 8);
  opt.policy.chunk_threshold_keys = r.in(-1, 8);
  if (r.in(0, 3) == 0) opt.policy.workspace_limit_bytes = r.in(-1, 1 << 16);
  opt.threads = static_cast<int>(r.in(-1, 2));
  // Read last, with "off" at the reader's end value, so that the committed
  // corpus inputs (written before these options) still parse as they did.
  opt.causal_align = static_cast<CausalAlign>(r.in(0, 2));  // 2: not an enumerator
  if (r.in(0, 3) == 1) {
    opt.window_left = r.in(-3, 8);
    opt.window_right = r.in(-3, 8);
  }
  if (r.in(0, 4) == 1) {
    const std::int64_t c = r.in(0, 12);
    opt.softcap = c == 0   ? std::numeric_limits<float>::quiet_NaN()
                  : c == 1 ? std::numeric_limits<float>::infinity()
                  : c == 2 ? -1.f
                           : static_cast<float>(c - 3) * 0.5f;
  }
  // Keep the work tiny so the fuzzer stays fast.
  const double work = double(q.shape[0]) * double(q.shape[1]) * double(q.shape[2]) *
                      double(k.shape[2]) * double(q.shape[3] + v.shape[3]);
  if (!(work < 1e6)) return 0;
  try {
    attention(q, k, v, o, opt);
  } catch (const Error& e) {
    const std::string w = e.what();
    static const std::string prefix = "[longattn::attention] ";
    if (w.rfind(prefix, 0) != 0) fail("message does not start with the operation", w);
    if (e.code() == ErrorCode::invalid_argument || e.code() == ErrorCode::unsupported) {
      static const std::regex names(
          "\\b(q|k|v|out|mask|sinks|lse|scale|threads|backend|causal_align|window_left|"
          "window_right|softcap)(\\.(shape|strides|dtype|device|"
          "data|rank)\\b|\\b)|\\bpolicy\\.[a-z_]+");
      if (!std::regex_search(w.begin() + static_cast<std::ptrdiff_t>(prefix.size()), w.end(),
                             names))
        fail("refusal does not name an argument", w);
    }
    return 0;
  }
  const std::string bad = contract(q, k, v, o, opt);
  if (!bad.empty()) fail("attention() accepted arguments the contract refuses", bad);
  check_output(v, o, opt);
  return 0;
}
