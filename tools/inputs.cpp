// Generated inputs and their placement on the CPU or a CUDA device.
#include "inputs.hpp"

#include <cmath>
#include <cstring>
#include <limits>

#include "half.hpp"

namespace longattn::cli {
namespace {

// A counter-based generator: element i of stream s is a hash of (seed, s, i).
// Unlike a sequential RNG it fills in parallel and gives the same bytes for
// any thread count.
std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

double uniform01(std::uint64_t seed, std::uint64_t stream, std::uint64_t i) {
  const std::uint64_t h = mix(mix(seed * 0x100000001b3ull + stream) ^ i);
  return static_cast<double>(h >> 11) * 0x1.0p-53;
}

void store(HostArray& a, std::int64_t i, double x) {
  switch (a.dtype) {
    case DType::float32:
      a.as<float>()[i] = static_cast<float>(x);
      return;
    case DType::float16:
      a.as<std::uint16_t>()[i] = float_to_f16(static_cast<float>(x));
      return;
    case DType::bfloat16:
      a.as<std::uint16_t>()[i] = float_to_bf16(static_cast<float>(x));
      return;
    case DType::boolean:
      a.as<std::uint8_t>()[i] = x != 0.0 ? 1 : 0;
      return;
  }
}

// Fills `a` with f(u) for u uniform in [0, 1), from stream `stream`.
template <class F>
void fill(HostArray& a, std::uint64_t seed, std::uint64_t stream, F f) {
  const std::int64_t n = a.numel();
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i)
    store(a, i, f(uniform01(seed, stream, static_cast<std::uint64_t>(i))));
}

TensorView place_one(HostArray& a, DeviceBuffer& buf, Device d) {
  if (a.empty()) return {};
  TensorView v = a.view();
  if (d == Device::cuda) {
    buf = DeviceBuffer(a.data.size());
    buf.upload(a.data.data(), a.data.size());
    v.data = buf.data();
    v.device = Device::cuda;
  }
  return v;
}

std::array<std::int64_t, 4> arr4(std::int64_t a, std::int64_t b, std::int64_t c, std::int64_t d) {
  return {a, b, c, d};
}

}  // namespace

const char* mask_option_name(MaskOption m) {
  switch (m) {
    case MaskOption::none:
      return "none";
    case MaskOption::boolean:
      return "bool";
    case MaskOption::additive:
      return "additive";
  }
  return "?";
}

std::string ProblemSpec::describe() const {
  std::string s = "B=" + std::to_string(batch) + " Hq=" + std::to_string(heads) +
                  " Hkv=" + std::to_string(kv_heads) + " Lq=" + std::to_string(q_len) +
                  " Lk=" + std::to_string(k_len) + " D=" + std::to_string(head_dim);
  if (dv() != head_dim) s += " Dv=" + std::to_string(dv());
  s += std::string(" ") + dtype_name(dtype) + (causal ? " causal" : " full");
  if (mask != MaskOption::none) s += std::string(" mask=") + mask_option_name(mask);
  if (sinks) s += " sinks";
  return s;
}

void Workload::place(Device d) {
  device = d;
  q_view = place_one(q, dq_, d);
  k_view = place_one(k, dk_, d);
  v_view = place_one(v, dv_, d);
  out_view = place_one(out, dout_, d);
  mask_view = place_one(mask, dmask_, d);
  sinks_view = place_one(sinks, dsinks_, d);
  lse_view = place_one(lse, dlse_, d);
}

void Workload::fetch_outputs() {
  if (device != Device::cuda) return;
  dout_.download(out.data.data(), out.data.size());
  if (!lse.empty()) dlse_.download(lse.data.data(), lse.data.size());
}

AttentionOptions Workload::options() const {
  AttentionOptions o;
  o.causal = causal;
  o.scale = scale;
  o.mask = mask_view;
  o.sinks = sinks_view;
  o.lse = lse_view;
  o.backend = device == Device::cuda ? BackendKind::cuda : BackendKind::cpu;
  return o;
}

ShapeViews shape_views(const ProblemSpec& s, Device device) {
  ShapeViews v;
  v.q = contiguous(nullptr, s.dtype, arr4(s.batch, s.heads, s.q_len, s.head_dim), device);
  v.k = contiguous(nullptr, s.dtype, arr4(s.batch, s.kv_heads, s.k_len, s.head_dim), device);
  v.v = contiguous(nullptr, s.dtype, arr4(s.batch, s.kv_heads, s.k_len, s.dv()), device);
  v.out = contiguous(nullptr, s.dtype, arr4(s.batch, s.heads, s.q_len, s.dv()), device);
  if (s.mask != MaskOption::none) {
    const DType mt = s.mask == MaskOption::boolean ? DType::boolean : s.dtype;
    v.mask = contiguous(nullptr, mt, arr4(1, 1, s.q_len, s.k_len), device);
  }
  if (s.sinks) v.sinks = contiguous(nullptr, DType::float32, 1, arr4(s.heads, 1, 1, 1), device);
  return v;
}

void allocate_outputs(Workload& w, bool with_lse) {
  const auto& qs = w.q.shape;
  const auto& vs = w.v.shape;
  w.out = HostArray(w.q.dtype, {qs[0], qs[1], qs[2], vs[3]}, "the output");
  w.lse = with_lse ? HostArray(DType::float32, {qs[0], qs[1], qs[2]}, "the LSE") : HostArray();
}

Workload generate_workload(const ProblemSpec& s) {
  Workload w;
  w.causal = s.causal;
  w.scale = s.scale;
  // sqrt(3) * (2u - 1) has unit variance, so q.k / sqrt(D) has unit variance
  // too: softmax rows neither collapse to one key nor go flat.
  const auto unit = [](double u) { return std::sqrt(3.0) * (2.0 * u - 1.0); };
  w.q = HostArray(s.dtype, {s.batch, s.heads, s.q_len, s.head_dim}, "generated q");
  w.k = HostArray(s.dtype, {s.batch, s.kv_heads, s.k_len, s.head_dim}, "generated k");
  w.v = HostArray(s.dtype, {s.batch, s.kv_heads, s.k_len, s.dv()}, "generated v");
  fill(w.q, s.seed, 1, unit);
  fill(w.k, s.seed, 2, unit);
  fill(w.v, s.seed, 3, unit);
  if (s.mask == MaskOption::boolean) {
    w.mask = HostArray(DType::boolean, {1, 1, s.q_len, s.k_len}, "the generated mask");
    fill(w.mask, s.seed, 4, [](double u) { return u < 0.9 ? 1.0 : 0.0; });
  } else if (s.mask == MaskOption::additive) {
    w.mask = HostArray(s.dtype, {1, 1, s.q_len, s.k_len}, "the generated mask");
    fill(w.mask, s.seed, 4,
         [](double u) { return u < 0.05 ? -std::numeric_limits<double>::infinity() : -2.0 * u; });
  }
  if (s.sinks) {
    w.sinks = HostArray(DType::float32, {s.heads}, "the generated sinks");
    fill(w.sinks, s.seed, 5, [](double u) { return 2.0 * u; });
  }
  allocate_outputs(w, /*with_lse=*/true);
  return w;
}

}  // namespace longattn::cli
