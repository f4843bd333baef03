// Argument checks for attention(): the only place that looks at the caller's
// views. Every failure names the operation, the argument and the value.
#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <thread>
#include <vector>

#include "core/backend.hpp"
#include "core/faults.hpp"
#include "core/problem.hpp"

namespace longattn::core {
namespace {

struct Checker {
  const char* op;

  template <class... Args>
  [[noreturn]] void fail(const Args&... parts) const {
    std::ostringstream s;
    s << '[' << op << "] ";
    (s << ... << parts);
    throw InvalidArgument(s.str());
  }
  template <class... Args>
  [[noreturn]] void unsupported(const Args&... parts) const {
    std::ostringstream s;
    s << '[' << op << "] ";
    (s << ... << parts);
    throw Unsupported(s.str());
  }

  void rank(const TensorView& t, const char* name, int want) const {
    if (t.rank != want)
      fail(name, ".rank = ", t.rank, " but must be ", want, " (shape ", t.shape_string(), ")");
    for (int i = 0; i < want; ++i) {
      const auto u = static_cast<std::size_t>(i);
      if (t.shape[u] < 0) fail(name, ".shape[", i, "] = ", t.shape[u], " is negative");
      if (t.strides[u] < 0) fail(name, ".strides[", i, "] = ", t.strides[u], " is negative");
    }
  }

  void dim(const TensorView& t, const char* name, int i, std::int64_t want,
           const char* what) const {
    const auto got = t.shape[static_cast<std::size_t>(i)];
    if (got != want) fail(name, ".shape[", i, "] = ", got, " but must equal ", what, " = ", want);
  }

  // Bytes spanned by the view, [0, extent). Throws when it overflows int64.
  std::int64_t extent_bytes(const TensorView& t, const char* name) const {
    for (int i = 0; i < t.rank; ++i)
      if (t.shape[static_cast<std::size_t>(i)] == 0)
        return 0;  // empty: no bytes, however large the rest
    std::int64_t n = 1;
    for (int i = 0; i < t.rank; ++i)
      if (__builtin_mul_overflow(n, t.shape[static_cast<std::size_t>(i)], &n))
        fail(name, " of shape ", t.shape_string(), " has more elements than int64 can count");
    std::int64_t last = 0;
    for (int i = 0; i < t.rank; ++i) {
      const auto u = static_cast<std::size_t>(i);
      std::int64_t span = 0;
      if (__builtin_mul_overflow(t.shape[u] - 1, t.strides[u], &span) ||
          __builtin_add_overflow(last, span, &last))
        fail(name, " of shape ", t.shape_string(), " spans more elements than int64 can count");
    }
    std::int64_t bytes = 0;
    if (__builtin_add_overflow(last, 1, &last) ||
        __builtin_mul_overflow(last, static_cast<std::int64_t>(dtype_size(t.dtype)), &bytes))
      fail(name, " of shape ", t.shape_string(), " has a byte size that overflows int64");
    return bytes;
  }

  void data(const TensorView& t, const char* name, bool need_data) const {
    if (need_data && t.data == nullptr && t.numel() > 0)
      fail(name, ".data = null with ", t.numel(), " elements (shape ", t.shape_string(), ")");
  }
};

bool is_float(DType t) {
  return t == DType::float32 || t == DType::float16 || t == DType::bfloat16;
}

struct Span {
  const char* name;
  std::uintptr_t begin, end;
};

}  // namespace

int max_cpu_threads() {
  // An absurd thread count makes the OpenMP runtime fail to create threads
  // or crash outright; more threads than this buys nothing on any machine.
  return std::max(1024, static_cast<int>(std::thread::hardware_concurrency()));
}

Problem validate_attention(const TensorView& q, const TensorView& k, const TensorView& v,
                           const TensorView& out, const AttentionOptions& opt, const char* op,
                           bool need_data) {
  const Checker c{op};
  c.rank(q, "q", 4);
  c.rank(k, "k", 4);
  c.rank(v, "v", 4);
  c.rank(out, "out", 4);

  if (!is_float(q.dtype))
    c.fail("q.dtype = ", dtype_name(q.dtype), " must be float32, float16 or bfloat16");
  if (k.dtype != q.dtype)
    c.fail("k.dtype = ", dtype_name(k.dtype), " differs from q.dtype = ", dtype_name(q.dtype));
  if (v.dtype != q.dtype)
    c.fail("v.dtype = ", dtype_name(v.dtype), " differs from q.dtype = ", dtype_name(q.dtype));
  if (out.dtype != q.dtype)
    c.fail("out.dtype = ", dtype_name(out.dtype), " differs from q.dtype = ", dtype_name(q.dtype));

  Problem p;
  p.B = q.shape[0];
  p.Hq = q.shape[1];
  p.Lq = q.shape[2];
  p.D = q.shape[3];
  p.Hkv = k.shape[1];
  p.Lk = k.shape[2];
  p.Dv = v.shape[3];
  p.dtype = q.dtype;
  p.device = q.device;

  c.dim(k, "k", 0, p.B, "q.shape[0]");
  c.dim(v, "v", 0, p.B, "q.shape[0]");
  c.dim(k, "k", 3, p.D, "q.shape[3]");
  c.dim(v, "v", 1, p.Hkv, "k.shape[1]");
  c.dim(v, "v", 2, p.Lk, "k.shape[2]");
  c.dim(out, "out", 0, p.B, "q.shape[0]");
  c.dim(out, "out", 1, p.Hq, "q.shape[1]");
  c.dim(out, "out", 2, p.Lq, "q.shape[2]");
  c.dim(out, "out", 3, p.Dv, "v.shape[3]");
  if (p.Hkv < 1) c.fail("k.shape[1] = ", p.Hkv, " must be at least 1");
  if (p.Hq < 1) c.fail("q.shape[1] = ", p.Hq, " must be at least 1");
  if (p.Hq % p.Hkv != 0) c.fail("k.shape[1] = ", p.Hkv, " does not divide q.shape[1] = ", p.Hq);
  p.group = p.Hq / p.Hkv;
  if (p.D < 1 || p.D > 256) c.fail("q.shape[3] = ", p.D, " (head dim) must be in [1, 256]");
  if (p.Dv < 1 || p.Dv > 256)
    c.fail("v.shape[3] = ", p.Dv, " (value head dim) must be in [1, 256]");

  for (const auto* t : {&k, &v, &out})
    if (t->device != q.device)
      c.fail(t == &k   ? "k"
             : t == &v ? "v"
                       : "out",
             ".device = ", device_name(t->device),
             " differs from q.device = ", device_name(q.device));

  std::vector<Span> inputs;
  auto span = [&](const TensorView& t, const char* name) {
    const std::int64_t bytes = c.extent_bytes(t, name);
    c.data(t, name, need_data);
    const auto b = reinterpret_cast<std::uintptr_t>(t.data);
    if (t.data == nullptr) return Span{name, 0, 0};  // planning only: nothing to alias
    return Span{name, b, b + static_cast<std::uintptr_t>(bytes)};
  };
  inputs.push_back(span(q, "q"));
  inputs.push_back(span(k, "k"));
  inputs.push_back(span(v, "v"));
  const Span out_span = span(out, "out");

  // The output must not write the same element twice (a zero stride on a
  // dimension of size > 1) nor overlap any input. An empty output has no
  // element to write twice, whatever its strides.
  for (int i = 0; i < 4 && out.numel() > 0; ++i) {
    const auto u = static_cast<std::size_t>(i);
    if (out.shape[u] > 1 && out.strides[u] == 0)
      c.fail("out.strides[", i, "] = 0 with out.shape[", i, "] = ", out.shape[u],
             ": output elements would alias each other");
  }

  // Mask.
  if (opt.mask.present()) {
    const TensorView& m = opt.mask;
    c.rank(m, "mask", 4);
    if (m.dtype == DType::boolean)
      p.mask_kind = MaskKind::boolean;
    else if (is_float(m.dtype))
      p.mask_kind = MaskKind::additive;
    else
      c.fail("mask.dtype = ", dtype_name(m.dtype), " must be boolean or a float type");
    if (m.device != q.device)
      c.fail("mask.device = ", device_name(m.device),
             " differs from q.device = ", device_name(q.device));
    const std::int64_t full[4] = {p.B, p.Hq, p.Lq, p.Lk};
    const char* dims[4] = {"B", "Hq", "Lq", "Lk"};
    for (int i = 0; i < 4; ++i) {
      const auto u = static_cast<std::size_t>(i);
      if (m.shape[u] != 1 && m.shape[u] != full[i])
        c.fail("mask.shape[", i, "] = ", m.shape[u], " does not broadcast to ", dims[i], " = ",
               full[i]);
      p.mask_stride[i] = m.shape[u] == 1 ? 0 : m.strides[u];
    }
    inputs.push_back(span(m, "mask"));
    p.mask = m.data;
    p.mask_dtype = m.dtype;
  }

  // Sinks.
  if (opt.sinks.present()) {
    const TensorView& s = opt.sinks;
    c.rank(s, "sinks", 1);
    if (s.dtype != DType::float32)
      c.fail("sinks.dtype = ", dtype_name(s.dtype), " must be float32");
    c.dim(s, "sinks", 0, p.Hq, "q.shape[1]");
    if (s.device != q.device)
      c.fail("sinks.device = ", device_name(s.device),
             " differs from q.device = ", device_name(q.device));
    inputs.push_back(span(s, "sinks"));
    p.sinks = static_cast<const float*>(s.data);
    p.sinks_stride = s.strides[0];
  }

  // LSE output.
  std::vector<Span> outputs{out_span};
  if (opt.lse.present()) {
    const TensorView& l = opt.lse;
    c.rank(l, "lse", 3);
    if (l.dtype != DType::float32) c.fail("lse.dtype = ", dtype_name(l.dtype), " must be float32");
    c.dim(l, "lse", 0, p.B, "q.shape[0]");
    c.dim(l, "lse", 1, p.Hq, "q.shape[1]");
    c.dim(l, "lse", 2, p.Lq, "q.shape[2]");
    if (l.device != q.device)
      c.fail("lse.device = ", device_name(l.device),
             " differs from q.device = ", device_name(q.device));
    for (int i = 0; i < 3; ++i) {
      const auto u = static_cast<std::size_t>(i);
      if (l.shape[u] > 1 && l.strides[u] == 0 && l.numel() > 0)
        c.fail("lse.strides[", i, "] = 0 with lse.shape[", i, "] = ", l.shape[u],
               ": output elements would alias each other");
      p.lse_stride[i] = l.strides[u];
    }
    const Span ls = span(l, "lse");
    if (ls.begin < out_span.end && out_span.begin < ls.end && ls.end > ls.begin &&
        out_span.end > out_span.begin)
      c.fail("lse overlaps out in memory");
    outputs.push_back(ls);
    p.lse = static_cast<float*>(l.data);
  }
  for (const Span& o : outputs)
    for (const Span& in : inputs)
      if (o.end > o.begin && in.end > in.begin && o.begin < in.end && in.begin < o.end)
        c.fail(o.name, " overlaps ", in.name, " in memory: outputs must not alias inputs");

  // Scale.
  const double scale = opt.scale.value_or(1.0 / std::sqrt(static_cast<double>(p.D)));
  // Checked against float32, the type the kernels use: 1e39 is a finite
  // double that would make every logit infinite and the output NaN.
  if (!std::isfinite(scale) || !std::isfinite(static_cast<float>(scale * 1.4426950408889634)))
    c.fail("scale = ", scale, " must be finite in float32 (|scale| <= ",
           std::numeric_limits<float>::max() / 1.4426950408889634, ")");
  p.scale = static_cast<float>(scale);
  p.scale_log2 = static_cast<float>(scale * 1.4426950408889634);

  // Soft-cap. The kernels cap in base 2, at softcap * log2(e): that must be
  // finite in float32 too, or inf * tanh(0) would make a logit NaN.
  const double softcap = opt.softcap;
  if (!(softcap >= 0) || !std::isfinite(softcap) ||
      !std::isfinite(static_cast<float>(softcap * 1.4426950408889634)))
    c.fail("softcap = ", softcap, " must be finite and >= 0 (0 = off; at most ",
           std::numeric_limits<float>::max() / 1.4426950408889634, ")");
  p.softcap = opt.softcap;
  p.softcap_log2 = static_cast<float>(softcap * 1.4426950408889634);

  // Policy and options.
  const Policy& pol = opt.policy;
  if (!(pol.budget_ms >= 0) || !std::isfinite(pol.budget_ms))
    c.fail("policy.budget_ms = ", pol.budget_ms, " must be finite and >= 0 (0 = no budget)");
  if (!(pol.safety > 0 && pol.safety <= 1))
    c.fail("policy.safety = ", pol.safety, " must be in (0, 1]");
  if (pol.chunk_threshold_keys < 0)
    c.fail("policy.chunk_threshold_keys = ", pol.chunk_threshold_keys, " must be >= 0");
  if (pol.workspace_limit_bytes < 0)
    c.fail("policy.workspace_limit_bytes = ", pol.workspace_limit_bytes, " must be >= 0");
  if (pol.fixed_chunk_keys < 0)
    c.fail("policy.fixed_chunk_keys = ", pol.fixed_chunk_keys, " must be >= 0");
  if (pol.fixed_query_rows < 0)
    c.fail("policy.fixed_query_rows = ", pol.fixed_query_rows, " must be >= 0");
  if (opt.causal_align != CausalAlign::bottom_right && opt.causal_align != CausalAlign::top_left)
    c.fail("causal_align = ", static_cast<int>(opt.causal_align),
           " is not a CausalAlign (bottom_right or top_left)");
  if (opt.window_left < -1)
    c.fail("window_left = ", opt.window_left, " must be >= 0, or -1 for unbounded");
  if (opt.window_right < -1)
    c.fail("window_right = ", opt.window_right, " must be >= 0, or -1 for unbounded");
  const int max_threads = max_cpu_threads();
  if (opt.threads < 0 || opt.threads > max_threads)
    c.fail("threads = ", opt.threads, " must be in [0, ", max_threads,
           "] (0 = all hardware threads)");

  // Backend.
  BackendKind be = opt.backend;
  if (be == BackendKind::automatic)
    be = q.device == Device::cuda ? BackendKind::cuda : BackendKind::cpu;
  if (be == BackendKind::cpu && q.device != Device::cpu)
    c.fail("backend = cpu but q.device = ", device_name(q.device));
  if (be == BackendKind::cuda) {
    if (q.device != Device::cuda) c.fail("backend = cuda but q.device = ", device_name(q.device));
    const auto dims = cuda_head_dims();
    if (dims.empty())
      c.unsupported("backend = cuda but this build of longattn has no CUDA backend");
    // Narrower heads run padded to the next built width (KernelParams::width).
    if (!dims.empty() && std::max(p.D, p.Dv) > dims.back()) {
      std::ostringstream s;
      for (auto d : dims) s << ' ' << d;
      c.unsupported(p.D >= p.Dv ? "q.shape[3] = " : "v.shape[3] = ", std::max(p.D, p.Dv),
                    " is wider than every CUDA head-dim width of this build (built:", s.str(), ")");
    }
  }

  for (int i = 0; i < 4; ++i) {
    p.q_stride[i] = q.strides[static_cast<std::size_t>(i)];
    p.k_stride[i] = k.strides[static_cast<std::size_t>(i)];
    p.v_stride[i] = v.strides[static_cast<std::size_t>(i)];
    p.o_stride[i] = out.strides[static_cast<std::size_t>(i)];
  }
  p.q = q.data;
  p.k = k.data;
  p.v = v.data;
  p.o = out.data;
  p.causal = opt.causal;
  p.window_left = opt.window_left;
  p.window_right = opt.window_right;
  // Query i sees keys j <= i + causal_offset; top-left puts the diagonal
  // through (0, 0), bottom-right through (Lq - 1, Lk - 1).
  p.causal_offset = (opt.causal_align == CausalAlign::top_left ? 0 : p.Lk - p.Lq) +
                    (planted(Fault::shift_diagonal) ? 1 : 0);  // faults.hpp
  return p;
}

}  // namespace longattn::core
