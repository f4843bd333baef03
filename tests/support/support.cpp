#include "support.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <stdexcept>

namespace lt {

namespace {

constexpr std::byte kGuard{0xA5};
// Guard bytes before and after every view: a multiple of 16, so that a view
// starting at its allocation's start is 16-byte aligned, as real tensors are
// (the kernels' vectorized and TMA paths need it; a guard of 5 elements once
// kept every CUDA test off the Hopper kernel). Case::misaligned adds one
// element to reach the element-wise paths on purpose.
constexpr std::int64_t kGuardBytes = 32;

std::size_t size_of(DType t) {
  switch (t) {
    case DType::float32:
      return 4;
    case DType::float16:
    case DType::bfloat16:
      return 2;
    case DType::boolean:
      return 1;
  }
  throw std::logic_error("lt: unknown dtype");
}

const char* name_of(DType t) {
  switch (t) {
    case DType::float32:
      return "f32";
    case DType::float16:
      return "f16";
    case DType::bfloat16:
      return "bf16";
    case DType::boolean:
      return "bool";
  }
  return "?";
}

// Calls f(logical index, element offset) for every element of a view with
// `rank` dims, in row-major logical order.
template <class F>
void for_each_element(int rank, const std::array<std::int64_t, 4>& shape,
                      const std::array<std::int64_t, 4>& strides, F&& f) {
  std::array<std::int64_t, 4> n{1, 1, 1, 1}, s{0, 0, 0, 0};
  for (int d = 0; d < rank; ++d) {
    n[4 - rank + d] = shape[d];
    s[4 - rank + d] = strides[d];
  }
  std::int64_t idx = 0;
  for (std::int64_t a = 0; a < n[0]; ++a)
    for (std::int64_t b = 0; b < n[1]; ++b)
      for (std::int64_t c = 0; c < n[2]; ++c)
        for (std::int64_t d = 0; d < n[3]; ++d) f(idx++, a * s[0] + b * s[1] + c * s[2] + d * s[3]);
}

// A buffer of `alloc` elements (plus guards) with a view of `shape` and
// `strides` starting at element `start` of the allocation.
Buffer make_buffer(DType t, int rank, std::array<std::int64_t, 4> shape,
                   std::array<std::int64_t, 4> strides, std::int64_t alloc, std::int64_t start,
                   bool output, bool misaligned = false) {
  Buffer b;
  b.output = output;
  const std::int64_t guard = kGuardBytes / static_cast<std::int64_t>(size_of(t));
  const std::int64_t before = guard + (misaligned ? 1 : 0);
  const std::int64_t total = before + alloc + guard;
  b.bytes.assign(static_cast<std::size_t>(total) * size_of(t), kGuard);
  b.offset = before + start;
  b.view.data = b.bytes.data() + b.offset * static_cast<std::int64_t>(size_of(t));
  b.view.dtype = t;
  b.view.rank = rank;
  b.view.shape = shape;
  b.view.strides = strides;
  b.view.device = Device::cpu;
  if (!output && t != DType::boolean)
    for (std::int64_t i = 0; i < total; ++i)
      store(t, b.bytes.data(), i, std::numeric_limits<double>::quiet_NaN());
  return b;
}

// A [B, H, L, X] tensor in the given layout. `is_kv` selects the cache
// layouts for k and v; q and out get padded rows instead.
Buffer make_bhlx(DType t, Layout layout, bool is_kv, std::int64_t B, std::int64_t H, std::int64_t L,
                 std::int64_t X, bool output, bool misaligned) {
  const std::array<std::int64_t, 4> shape{B, H, L, X};
  switch (layout) {
    case Layout::bhld:
      return make_buffer(t, 4, shape, {H * L * X, L * X, X, 1}, B * H * L * X, 0, output,
                         misaligned);
    case Layout::blhd:
      return make_buffer(t, 4, shape, {L * H * X, X, H * X, 1}, B * H * L * X, 0, output,
                         misaligned);
    case Layout::cache_slice:
      if (is_kv) {
        const std::int64_t Lcap = L + 16;
        return make_buffer(t, 4, shape, {H * Lcap * X, Lcap * X, X, 1}, (B + 1) * H * Lcap * X,
                           H * Lcap * X + 5 * X, output, misaligned);
      } else {
        const std::int64_t Xcap = X + 3;
        return make_buffer(t, 4, shape, {H * L * Xcap, L * Xcap, Xcap, 1}, B * H * L * Xcap, 0,
                           output, misaligned);
      }
    case Layout::cache_slice_blhd:
      if (is_kv) {
        const std::int64_t Lcap = L + 16;
        return make_buffer(t, 4, shape, {Lcap * H * X, X, H * X, 1}, B * Lcap * H * X, 5 * H * X,
                           output, misaligned);
      } else {
        return make_buffer(t, 4, shape, {L * H * X, X, H * X, 1}, B * H * L * X, 0, output,
                           misaligned);
      }
  }
  throw std::logic_error("lt: unknown layout");
}

// Element offset of a logical index into a view.
std::int64_t offset_of(const TensorView& v, std::array<std::int64_t, 4> idx) {
  std::int64_t off = 0;
  for (int d = 0; d < v.rank; ++d) off += idx[d] * v.strides[d];
  return off;
}

double draw_nonzero(std::mt19937_64& rng, std::normal_distribution<double>& dist, double stddev) {
  for (;;) {
    const double x = dist(rng) * stddev;
    if (x != 0.0) return x;
  }
}

}  // namespace

// ---- conversions -------------------------------------------------------------

std::uint16_t float_to_half(float f) {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  const std::uint16_t sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
  const std::uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7e00u);  // NaN
  // 65520 = 0x477ff000 is halfway between 65504 (odd mantissa) and 2^16: even is inf.
  if (ax >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);
  if (ax < 0x38800000u) {
    // Below 2^-14: a subnormal half, i.e. an integer multiple of 2^-24.
    // Scaling by 2^24 is exact; nearbyint rounds to nearest even. 1024 is
    // exactly the bit pattern of the smallest normal.
    const float scaled = std::bit_cast<float>(ax) * 16777216.0f;
    return static_cast<std::uint16_t>(sign | static_cast<std::uint16_t>(std::nearbyint(scaled)));
  }
  const std::uint32_t exp = (ax >> 23) - 127 + 15;
  const std::uint32_t man = ax & 0x7fffffu;
  std::uint32_t h = (exp << 10) | (man >> 13);
  const std::uint32_t rem = man & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // a carry rolls into the exponent
  return static_cast<std::uint16_t>(sign | h);
}

float half_to_float(std::uint16_t h) {
  const bool neg = (h & 0x8000u) != 0;
  const int exp = (h >> 10) & 0x1f;
  const int man = h & 0x3ff;
  float v;
  if (exp == 0)
    v = std::ldexp(static_cast<float>(man), -24);
  else if (exp == 31)
    v = man ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  else
    v = std::ldexp(static_cast<float>(1024 + man), exp - 25);
  return neg ? -v : v;
}

std::uint16_t float_to_bf16(float f) {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x0040u);
  const std::uint32_t rounded = x + 0x7fffu + ((x >> 16) & 1u);
  return static_cast<std::uint16_t>(rounded >> 16);
}

float bf16_to_float(std::uint16_t h) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16);
}

double round_to(DType t, double x) {
  switch (t) {
    case DType::float32:
      return static_cast<float>(x);
    case DType::float16:
      return half_to_float(float_to_half(static_cast<float>(x)));
    case DType::bfloat16:
      return bf16_to_float(float_to_bf16(static_cast<float>(x)));
    case DType::boolean:
      return x != 0.0 ? 1.0 : 0.0;
  }
  throw std::logic_error("lt: unknown dtype");
}

double load(DType t, const void* base, std::int64_t index) {
  const auto* p =
      static_cast<const std::byte*>(base) + index * static_cast<std::int64_t>(size_of(t));
  switch (t) {
    case DType::float32: {
      float f;
      std::memcpy(&f, p, 4);
      return f;
    }
    case DType::float16:
    case DType::bfloat16: {
      std::uint16_t h;
      std::memcpy(&h, p, 2);
      return t == DType::float16 ? half_to_float(h) : bf16_to_float(h);
    }
    case DType::boolean:
      return *reinterpret_cast<const std::uint8_t*>(p) != 0 ? 1.0 : 0.0;
  }
  throw std::logic_error("lt: unknown dtype");
}

void store(DType t, void* base, std::int64_t index, double x) {
  auto* p = static_cast<std::byte*>(base) + index * static_cast<std::int64_t>(size_of(t));
  switch (t) {
    case DType::float32: {
      const float f = static_cast<float>(x);
      std::memcpy(p, &f, 4);
      return;
    }
    case DType::float16:
    case DType::bfloat16: {
      const float f = static_cast<float>(x);
      const std::uint16_t h = t == DType::float16 ? float_to_half(f) : float_to_bf16(f);
      std::memcpy(p, &h, 2);
      return;
    }
    case DType::boolean:
      *reinterpret_cast<std::uint8_t*>(p) = x != 0.0 ? 1 : 0;
      return;
  }
  throw std::logic_error("lt: unknown dtype");
}

// ---- tolerance -----------------------------------------------------------------

double tolerance(DType t, std::int64_t keys) {
  switch (t) {
    case DType::float32:
      return ref::tolerance(ref::FloatType::float32, keys);
    case DType::float16:
      return ref::tolerance(ref::FloatType::float16, keys);
    case DType::bfloat16:
      return ref::tolerance(ref::FloatType::bfloat16, keys);
    case DType::boolean:
      break;
  }
  throw std::logic_error("lt: no tolerance for this dtype");
}

// ---- case ---------------------------------------------------------------------

const char* to_string(MaskKind m) {
  switch (m) {
    case MaskKind::none:
      return "none";
    case MaskKind::boolean:
      return "bool";
    case MaskKind::additive:
      return "add";
  }
  return "?";
}

const char* to_string(Layout l) {
  switch (l) {
    case Layout::bhld:
      return "bhld";
    case Layout::blhd:
      return "blhd";
    case Layout::cache_slice:
      return "cache_slice";
    case Layout::cache_slice_blhd:
      return "cache_slice_blhd";
  }
  return "?";
}

double Case::effective_scale() const {
  return scale ? *scale : 1.0 / std::sqrt(static_cast<double>(D));
}

std::string Case::name() const {
  std::ostringstream s;
  s << "B" << B << " Hq" << Hq << " Hkv" << Hkv << " Lq" << Lq << " Lk" << Lk << " D" << D;
  if (dv() != D) s << " Dv" << dv();
  s << " " << name_of(dtype);
  if (causal) s << (causal_top_left ? " causal(top-left)" : " causal");
  if (window_left >= 0 || window_right >= 0)
    s << " window(" << window_left << "," << window_right << ")"
      << (causal_top_left && !causal ? "(top-left)" : "");
  if (misaligned) s << " misaligned";
  if (mask != MaskKind::none) {
    s << " mask=" << to_string(mask) << "[";
    for (int d = 0; d < 4; ++d) s << (mask_broadcast[d] ? "1" : "n");
    s << "]";
    if (mask_stride0) s << "/stride0";
    if (mask == MaskKind::additive) s << "/" << name_of(additive_dtype);
  }
  if (sinks) s << " sinks";
  if (layout != Layout::bhld) s << " " << to_string(layout);
  if (scale) s << " scale=" << *scale;
  if (softcap > 0) s << " softcap=" << softcap;
  if (qk_std != 1.0) s << " qk_std=" << qk_std;
  s << " seed=" << seed;
  return s.str();
}

bool small_tests() {
  const char* e = std::getenv("LONGATTN_TEST_SMALL");
  return e != nullptr && *e != '\0' && std::string(e) != "0";
}

// ---- buffers -------------------------------------------------------------------

std::int64_t Buffer::elements() const {
  return present() ? static_cast<std::int64_t>(bytes.size() / size_of(view.dtype)) : 0;
}

TensorView Buffer::view_at(void* base, Device device) const {
  TensorView t = view;
  t.data = static_cast<std::byte*>(base) + offset * static_cast<std::int64_t>(size_of(view.dtype));
  t.device = device;
  return t;
}

void Buffer::poison_output() {
  std::fill(bytes.begin(), bytes.end(), kGuard);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for_each_element(view.rank, view.shape, view.strides,
                   [&](std::int64_t, std::int64_t off) { store(view.dtype, view.data, off, nan); });
}

std::int64_t Buffer::guard_damage() const {
  const std::size_t es = size_of(view.dtype);
  std::vector<char> covered(bytes.size() / es, 0);
  for_each_element(view.rank, view.shape, view.strides, [&](std::int64_t, std::int64_t off) {
    covered[static_cast<std::size_t>(offset + off)] = 1;
  });
  std::int64_t damaged = 0;
  for (std::size_t e = 0; e < covered.size(); ++e) {
    if (covered[e]) continue;
    for (std::size_t b = 0; b < es; ++b)
      if (bytes[e * es + b] != kGuard) {
        ++damaged;
        break;
      }
  }
  return damaged;
}

std::vector<double> Buffer::read() const {
  std::vector<double> out;
  out.reserve(static_cast<std::size_t>(view.numel()));
  for_each_element(view.rank, view.shape, view.strides, [&](std::int64_t, std::int64_t off) {
    out.push_back(load(view.dtype, view.data, off));
  });
  return out;
}

// ---- case data -------------------------------------------------------------------

CaseData::CaseData(const Case& cs) : c(cs) {
  const std::int64_t B = c.B, Hq = c.Hq, Hkv = c.Hkv, Lq = c.Lq, Lk = c.Lk, D = c.D, Dv = c.dv();
  in.B = B, in.Hq = Hq, in.Hkv = Hkv, in.Lq = Lq, in.Lk = Lk, in.D = D, in.Dv = Dv;
  in.scale = c.effective_scale();
  in.softcap = c.softcap;
  in.causal = c.causal;
  in.causal_top_left = c.causal_top_left;
  in.window_left = c.window_left;
  in.window_right = c.window_right;

  q = make_bhlx(c.dtype, c.layout, false, B, Hq, Lq, D, false, c.misaligned);
  k = make_bhlx(c.dtype, c.layout, true, B, Hkv, Lk, D, false, c.misaligned);
  v = make_bhlx(c.dtype, c.layout, true, B, Hkv, Lk, Dv, false, c.misaligned);
  out = make_bhlx(c.dtype, c.layout, false, B, Hq, Lq, Dv, true, c.misaligned);

  std::mt19937_64 rng(c.seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  auto fill = [&](Buffer& buf, std::vector<double>& dst, double stddev) {
    dst.resize(static_cast<std::size_t>(buf.view.numel()));
    for_each_element(buf.view.rank, buf.view.shape, buf.view.strides,
                     [&](std::int64_t i, std::int64_t off) {
                       const double x = round_to(c.dtype, draw_nonzero(rng, normal, stddev));
                       store(c.dtype, buf.view.data, off, x);
                       dst[static_cast<std::size_t>(i)] = x;
                     });
  };
  fill(q, in.q, c.qk_std);
  fill(k, in.k, c.qk_std);
  fill(v, in.v, 1.0);

  if (c.mask != MaskKind::none) {
    const std::array<std::int64_t, 4> full{B, Hq, Lq, Lk};
    std::array<std::int64_t, 4> ms{}, vshape{}, vstrides{};
    for (int d = 0; d < 4; ++d) ms[d] = c.mask_broadcast[d] ? 1 : full[d];
    std::int64_t stride = 1;
    for (int d = 3; d >= 0; --d) {
      vstrides[d] = ms[d] == 1 && c.mask_stride0 ? 0 : stride;
      vshape[d] = c.mask_stride0 ? full[d] : ms[d];
      stride *= ms[d];
    }
    const DType mt = c.mask == MaskKind::boolean ? DType::boolean : c.additive_dtype;
    mask = make_buffer(mt, 4, vshape, vstrides, stride, 0, false);
    in.mask_type = c.mask == MaskKind::boolean ? ref::MaskType::boolean : ref::MaskType::additive;
    in.mask_shape = ms;
    in.mask.resize(static_cast<std::size_t>(stride));
    std::uniform_real_distribution<double> u01(0.0, 1.0);
    for (std::int64_t i = 0; i < stride; ++i) {
      const bool drop = u01(rng) < c.mask_drop;
      double x;
      if (c.mask == MaskKind::boolean)
        x = drop ? 0.0 : 1.0;
      else
        x = drop ? -std::numeric_limits<double>::infinity() : round_to(mt, normal(rng));
      store(mt, mask.bytes.data(), mask.offset + i, x);
      in.mask[static_cast<std::size_t>(i)] = x;
    }
  }

  if (c.sinks) {
    sinks = make_buffer(DType::float32, 1, {Hq, 0, 0, 0}, {1, 0, 0, 0}, Hq, 0, false);
    in.sinks.resize(static_cast<std::size_t>(Hq));
    for (std::int64_t h = 0; h < Hq; ++h) {
      const double x = round_to(DType::float32, 1.5 * normal(rng));
      store(DType::float32, sinks.view.data, h, x);
      in.sinks[static_cast<std::size_t>(h)] = x;
    }
  }

  if (c.lse) {
    if (c.layout == Layout::cache_slice)
      lse = make_buffer(DType::float32, 3, {B, Hq, Lq, 0}, {Hq * (Lq + 2), Lq + 2, 1, 0},
                        B * Hq * (Lq + 2), 0, true);
    else
      lse =
          make_buffer(DType::float32, 3, {B, Hq, Lq, 0}, {Hq * Lq, Lq, 1, 0}, B * Hq * Lq, 0, true);
  }
  reset_outputs();
}

Tensors CaseData::host_views() const {
  Tensors t;
  t.q = q.view, t.k = k.view, t.v = v.view, t.out = out.view;
  if (mask.present()) t.mask = mask.view;
  if (sinks.present()) t.sinks = sinks.view;
  if (lse.present()) t.lse = lse.view;
  return t;
}

Tensors CaseData::views_at(const std::function<void*(const Buffer&)>& base_of,
                           Device device) const {
  Tensors t;
  auto at = [&](const Buffer& b) {
    return b.present() ? b.view_at(base_of(b), device) : TensorView{};
  };
  t.q = at(q), t.k = at(k), t.v = at(v), t.out = at(out);
  t.mask = at(mask), t.sinks = at(sinks), t.lse = at(lse);
  return t;
}

std::vector<Buffer*> CaseData::buffers() {
  std::vector<Buffer*> r;
  for (Buffer* b : {&q, &k, &v, &out, &mask, &sinks, &lse})
    if (b->present()) r.push_back(b);
  return r;
}

longattn::AttentionOptions CaseData::options(const Tensors& t,
                                             longattn::AttentionOptions base) const {
  base.scale = c.scale;
  base.softcap = c.softcap;
  base.causal = c.causal;
  base.causal_align =
      c.causal_top_left ? longattn::CausalAlign::top_left : longattn::CausalAlign::bottom_right;
  base.window_left = c.window_left;
  base.window_right = c.window_right;
  base.mask = t.mask;
  base.sinks = t.sinks;
  base.lse = t.lse;
  return base;
}

void CaseData::set_q(std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t d, double x) {
  x = round_to(c.dtype, x);
  store(c.dtype, q.view.data, offset_of(q.view, {b, h, i, d}), x);
  in.q[static_cast<std::size_t>(((b * c.Hq + h) * c.Lq + i) * c.D + d)] = x;
  expected_.reset();
}

void CaseData::set_k(std::int64_t b, std::int64_t h, std::int64_t j, std::int64_t d, double x) {
  x = round_to(c.dtype, x);
  store(c.dtype, k.view.data, offset_of(k.view, {b, h, j, d}), x);
  in.k[static_cast<std::size_t>(((b * c.Hkv + h) * c.Lk + j) * c.D + d)] = x;
  expected_.reset();
}

void CaseData::set_v(std::int64_t b, std::int64_t h, std::int64_t j, std::int64_t d, double x) {
  x = round_to(c.dtype, x);
  store(c.dtype, v.view.data, offset_of(v.view, {b, h, j, d}), x);
  in.v[static_cast<std::size_t>(((b * c.Hkv + h) * c.Lk + j) * c.dv() + d)] = x;
  expected_.reset();
}

void CaseData::set_mask(std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j, double x) {
  if (!mask.present()) throw std::logic_error("lt: set_mask on a case without a mask");
  const auto& ms = in.mask_shape;
  const std::array<std::int64_t, 4> idx{b, h, i, j};
  std::int64_t flat = 0;
  for (int d = 0; d < 4; ++d) {
    if (idx[d] < 0 || idx[d] >= ms[d]) throw std::logic_error("lt: set_mask index out of range");
    flat = flat * ms[d] + idx[d];
  }
  x = round_to(mask.view.dtype, x);
  store(mask.view.dtype, mask.bytes.data(), mask.offset + flat, x);
  in.mask[static_cast<std::size_t>(flat)] = x;
  expected_.reset();
}

void CaseData::set_sink(std::int64_t h, double x) {
  if (!sinks.present()) throw std::logic_error("lt: set_sink on a case without sinks");
  x = round_to(DType::float32, x);
  store(DType::float32, sinks.view.data, h, x);
  in.sinks[static_cast<std::size_t>(h)] = x;
  expected_.reset();
}

void CaseData::reset_outputs() {
  out.poison_output();
  if (lse.present()) lse.poison_output();
}

const ref::Outputs& CaseData::expected() {
  if (!expected_) expected_ = ref::attention(in);
  return *expected_;
}

// ---- run and compare -----------------------------------------------------------

void run(CaseData& d, const longattn::AttentionOptions& base) {
  const Tensors t = d.host_views();
  longattn::attention(t.q, t.k, t.v, t.out, d.options(t, base));
}

Comparison compare(CaseData& d, std::optional<double> tol) {
  Comparison r;
  r.tol = tol ? *tol : tolerance(d.c.dtype, d.c.Lk);
  const ref::Outputs& want = d.expected();
  const std::vector<double> got_o = d.out.read();
  r.o = metric(got_o, want.o, d.c.dv());
  r.guard_damage = d.out.guard_damage();
  std::vector<double> got_lse;
  if (d.lse.present()) {
    got_lse = d.lse.read();
    r.lse = lse_metric(got_lse, want.lse);
    r.guard_damage += d.lse.guard_damage();
  }
  r.ok = r.o.err <= r.tol && r.lse.err <= lse_tolerance() && r.guard_damage == 0;
  std::ostringstream s;
  s << d.c.name() << ": tol " << r.tol << "; O " << r.o.describe_worst(got_o, want.o);
  if (d.lse.present())
    s << "; LSE (tol " << lse_tolerance() << ") " << r.lse.describe_worst(got_lse, want.lse);
  if (r.guard_damage) s << "; " << r.guard_damage << " elements written outside the output views";
  r.message = s.str();
  return r;
}

longattn::Policy chunked_policy(std::int64_t chunk_keys, std::int64_t query_rows) {
  longattn::Policy p;
  p.budget_ms = 0;
  p.chunk_threshold_keys = 1;
  p.fixed_chunk_keys = chunk_keys;
  p.fixed_query_rows = query_rows;
  return p;
}

longattn::Policy single_pass_policy() {
  longattn::Policy p;
  p.budget_ms = 0;
  p.chunk_threshold_keys = 0;
  p.fixed_chunk_keys = 0;
  p.fixed_query_rows = 0;
  return p;
}

}  // namespace lt
