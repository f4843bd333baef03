// calibrate(): measures a DeviceProfile from attention() calls on generated
// inputs (include/longattn/calibrate.hpp).
//
// Fixed costs come from tiny problems whose compute is negligible, run with
// plans of different shapes (one dispatch; many dispatches in few
// submissions; one dispatch per submission), fitted by least squares:
//   measured ms = submissions * submission_overhead + dispatches * dispatch_overhead.
// Throughput per rate key ("dtype/d<D>/<full|causal|masked>") comes from
// single-pass runs of a mid-size problem, minus those fixed costs. The
// running state's bandwidth comes from the extra time of a finely chunked
// run over the single-pass one, divided by the state bytes it moved.
#include "longattn/calibrate.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/backend.hpp"

namespace longattn {
namespace {

// A problem's shape: batch 1, GQA 4:1 where the head count allows.
struct Shape {
  std::int64_t heads, kv_heads, q_len, k_len, head_dim;
  DType dtype;
  bool causal = false, masked = false;
};

Shape shape_of(std::int64_t heads, std::int64_t q_len, std::int64_t k_len, std::int64_t hd,
               DType dt, bool causal, bool masked) {
  return {heads, heads % 4 == 0 ? heads / 4 : heads, q_len, k_len, hd, dt, causal, masked};
}

// Generated inputs in the backend's memory: values in [-1, 1) from a fixed
// pattern (the speed does not depend on them, but all-zero operands would
// flatter a GPU's power budget), a boolean mask keeping ~90% of the keys.
class Inputs {
 public:
  Inputs(const Shape& s, Device device) : device_(device) {
    q_ = make(s.dtype, {1, s.heads, s.q_len, s.head_dim}, 1);
    k_ = make(s.dtype, {1, s.kv_heads, s.k_len, s.head_dim}, 2);
    v_ = make(s.dtype, {1, s.kv_heads, s.k_len, s.head_dim}, 3);
    out_ = make(s.dtype, {1, s.heads, s.q_len, s.head_dim}, 0);
    if (s.masked) {
      std::vector<std::uint8_t> keep(static_cast<std::size_t>(s.q_len * s.k_len));
      for (std::size_t i = 0; i < keep.size(); ++i) keep[i] = (i * 2654435761u) % 10 != 0;
      mask_ = place(keep.data(), keep.size(), DType::boolean, {1, 1, s.q_len, s.k_len});
    }
  }
  AttentionOptions options() const {
    AttentionOptions o;
    o.mask = mask_.view;
    return o;
  }
  void run(AttentionOptions o) const { attention(q_.view, k_.view, v_.view, out_.view, o); }

 private:
  struct Array {
    std::vector<std::uint8_t> host;
    std::shared_ptr<void> device;
    TensorView view;
  };
  Array place(const void* bytes, std::size_t n, DType t, std::array<std::int64_t, 4> shape) {
    Array a;
    if (device_ == Device::cuda) {
      a.device = core::cuda_upload(bytes, n);
      a.view = contiguous(a.device.get(), t, shape, Device::cuda);
    } else {
      a.host.assign(static_cast<const std::uint8_t*>(bytes),
                    static_cast<const std::uint8_t*>(bytes) + n);
      a.view = contiguous(a.host.data(), t, shape, Device::cpu);
    }
    return a;
  }
  Array make(DType t, std::array<std::int64_t, 4> shape, std::uint32_t seed) {
    const std::int64_t n = shape[0] * shape[1] * shape[2] * shape[3];
    std::vector<std::uint8_t> bytes(static_cast<std::size_t>(n) * dtype_size(t));
    for (std::int64_t i = 0; i < n; ++i) {
      const float x =
          seed == 0 ? 0.f
                    : static_cast<float>(
                          (static_cast<std::uint32_t>(i) * 2654435761u + seed * 40503u) >> 8) /
                              8388608.f -
                          1.f;
      store(t, bytes.data(), i, x);
    }
    return place(bytes.data(), bytes.size(), t, shape);
  }
  static void store(DType t, std::uint8_t* base, std::int64_t i, float x) {
    if (t == DType::float32) {
      std::memcpy(base + i * 4, &x, 4);
      return;
    }
    std::uint32_t u;
    std::memcpy(&u, &x, 4);
    std::uint16_t h;
    if (t == DType::bfloat16) {
      h = static_cast<std::uint16_t>(u >> 16);
    } else {  // float16 of a value in [-1, 1): sign, exponent rebias, 10 mantissa bits
      const std::uint32_t sign = (u >> 16) & 0x8000u;
      const int e = static_cast<int>((u >> 23) & 0xFF) - 127 + 15;
      h = e <= 0 ? static_cast<std::uint16_t>(sign)
                 : static_cast<std::uint16_t>(sign | (static_cast<std::uint32_t>(e) << 10) |
                                              ((u >> 13) & 0x3FFu));
    }
    std::memcpy(base + i * 2, &h, 2);
  }

  Device device_;
  Array q_, k_, v_, out_, mask_;
};

struct Sample {
  double ms = 0;  // median measured total over the repetitions
  RunReport report;
};

// Runs one configuration `reps` times after a warm-up. Every run gets a
// scratch copy of the profile, so the measurements do not feed back into
// the plan they are measuring.
Sample measure(const Shape& s, Device device, const Policy& policy, const DeviceProfile& base,
               const CalibrateOptions& c, int reps) {
  const Inputs in(s, device);
  AttentionOptions o = in.options();
  o.causal = s.causal;
  o.policy = policy;
  o.threads = c.threads;
  o.cuda_stream = c.cuda_stream;
  o.backend = device == Device::cuda ? BackendKind::cuda : BackendKind::cpu;
  std::vector<double> times;
  Sample r;
  for (int i = 0; i <= reps; ++i) {
    DeviceProfile scratch = base;
    o.profile = &scratch;
    o.report = &r.report;
    in.run(o);
    if (i > 0) times.push_back(r.report.total_ms);
  }
  std::sort(times.begin(), times.end());
  r.ms = times[times.size() / 2];
  return r;
}

std::size_t count_dispatches(const RunReport& r) {
  std::size_t n = 0;
  for (const auto& s : r.submissions) n += s.dispatches;
  return n;
}

Policy no_budget() {
  Policy p = AttentionOptions::default_policy();
  p.budget_ms = 0;
  p.chunk_threshold_keys = 0;
  return p;
}

std::string format(const char* fmt, auto... args) {
  char buf[256];
  std::snprintf(buf, sizeof buf, fmt, args...);
  return buf;
}

void check_options(const CalibrateOptions& c) {
  auto bad = [](const std::string& what) {
    throw InvalidArgument("[longattn::calibrate] " + what);
  };
  if (c.reps < 1) bad("reps = " + std::to_string(c.reps) + " must be at least 1");
  if (c.dtypes.empty()) bad("dtypes is empty");
  if (c.head_dims.empty()) bad("head_dims is empty");
  if (c.heads < 1 || c.heads > 4096)
    bad("heads = " + std::to_string(c.heads) + " must be in [1, 4096]");
  if (c.q_len < 16 || c.q_len > (1 << 20))
    bad("q_len = " + std::to_string(c.q_len) + " must be in [16, 1048576]");
  if (c.k_len < 64 || c.k_len > (1 << 22))
    bad("k_len = " + std::to_string(c.k_len) + " must be in [64, 4194304]");
  if (c.backend != BackendKind::automatic && c.backend != BackendKind::cpu &&
      c.backend != BackendKind::cuda)
    bad("backend = " + std::to_string(static_cast<int>(c.backend)) + " is not a BackendKind");
}

// Every (dtype, head dim) asked for must be one the backend serves, checked
// by planning it before anything is measured: otherwise the run would skip
// them all and return a profile with no rates in it.
void check_supported(const CalibrateOptions& c, Device device) {
  for (DType dt : c.dtypes)
    for (std::int64_t hd : c.head_dims) {
      const Shape s = shape_of(c.heads, c.q_len, c.k_len, hd, dt, false, false);
      const TensorView q = contiguous(nullptr, dt, {1, s.heads, s.q_len, hd}, device);
      const TensorView k = contiguous(nullptr, dt, {1, s.kv_heads, s.k_len, hd}, device);
      AttentionOptions o;
      o.backend = device == Device::cuda ? BackendKind::cuda : BackendKind::cpu;
      o.policy = no_budget();
      o.threads = c.threads;
      try {
        (void)plan_attention(q, k, k, q, o);
      } catch (const Error& e) {
        if (e.code() != ErrorCode::invalid_argument && e.code() != ErrorCode::unsupported) throw;
        throw Unsupported("[longattn::calibrate] head_dims " + std::to_string(hd) +
                          " with dtypes " + dtype_name(dt) + ": not served by the " +
                          backend_name(o.backend) + " backend (" + e.what() + ")");
      }
    }
}

}  // namespace

DeviceProfile calibrate(const CalibrateOptions& c) {
  check_options(c);
  const BackendKind backend = c.backend != BackendKind::automatic ? c.backend
                              : core::cuda_available()            ? BackendKind::cuda
                                                                  : BackendKind::cpu;
  const Device device = backend == BackendKind::cuda ? Device::cuda : Device::cpu;
  check_supported(c, device);
  const auto say = [&](const std::string& line) {
    if (c.log) c.log(line);
  };

  DeviceProfile prof = default_profile(backend);
  say(format("longattn calibrate: %s (%d reps after a warm-up)", backend_name(backend), c.reps));

  // 1. Fixed costs, on the first dtype and head dim.
  const Shape tiny = shape_of(1, 16, 64, c.head_dims.front(), c.dtypes.front(), false, false);
  std::vector<std::array<double, 3>> rows;  // (submissions, dispatches, ms)
  auto add = [&](const char* name, const Policy& p) {
    try {
      const Sample s = measure(tiny, device, p, prof, c, std::max(c.reps, 5));
      const double subs = static_cast<double>(s.report.submissions.size());
      const double disp = static_cast<double>(count_dispatches(s.report));
      rows.push_back({subs, disp, s.ms});
      say(format("  fixed cost, %-27s %4.0f submissions %4.0f dispatches %9.3f ms", name, subs,
                 disp, s.ms));
    } catch (const Error& e) {
      say(std::string("  fixed cost, ") + name + ": skipped (" + e.what() + ")");
    }
  };
  const Policy single = no_budget();
  add("one dispatch", single);
  Policy many = no_budget();
  many.fixed_chunk_keys = 1;
  add("1-key chunks, no budget", many);
  Policy split = many;
  split.budget_ms = 1e-3;  // below any dispatch: one dispatch per submission
  add("1-key chunks, tiny budget", split);
  // Least squares for (submission, dispatch) overheads, no intercept.
  double a11 = 0, a12 = 0, a22 = 0, b1 = 0, b2 = 0;
  for (const auto& [s, d, ms] : rows) {
    a11 += s * s;
    a12 += s * d;
    a22 += d * d;
    b1 += s * ms;
    b2 += d * ms;
  }
  const double det = a11 * a22 - a12 * a12;
  if (rows.size() >= 2 && std::abs(det) > 1e-9 * a11 * a22) {
    prof.submission_overhead_ms = std::max(0.0, (b1 * a22 - b2 * a12) / det);
    prof.dispatch_overhead_ms = std::max(0.0, (a11 * b2 - a12 * b1) / det);
  } else if (!rows.empty()) {
    // Every plan had one dispatch per submission, so the two costs cannot
    // be told apart: charge it all to the dispatch, which the planner pays
    // in both cases.
    prof.dispatch_overhead_ms = rows[0][2] / std::max(1.0, rows[0][1]);
    prof.submission_overhead_ms = 0;
    say("  (one dispatch per submission in every plan: fixed cost charged to dispatches)");
  }
  say(format("  submission overhead %.4f ms, dispatch overhead %.4f ms",
             prof.submission_overhead_ms, prof.dispatch_overhead_ms));

  // 2. Throughput per rate key.
  say(format("  %-24s %10s %10s", "rate key", "ms", "GFLOP/s"));
  std::size_t measured = 0;
  for (DType dt : c.dtypes)
    for (std::int64_t hd : c.head_dims)
      for (const auto& [causal, masked] : {std::pair{false, false}, {true, false}, {false, true}}) {
        const Shape s = shape_of(c.heads, c.q_len, c.k_len, hd, dt, causal, masked);
        const std::string key = DeviceProfile::rate_key(dt, hd, causal, masked);
        try {
          const Sample r = measure(s, device, single, prof, c, c.reps);
          const double compute_ms = r.ms - prof.submission_overhead_ms - prof.dispatch_overhead_ms;
          const double g = r.report.total_flops / std::max(compute_ms, 1e-6) * 1e-6;
          prof.gflops[key] = g;
          ++measured;
          say(format("  %-24s %10.2f %10.1f", key.c_str(), r.ms, g));
        } catch (const Error& e) {
          say("  " + key + " skipped (" + e.what() + ")");
        }
      }

  // 3. Running-state bandwidth: a chunked run over the single-pass one.
  {
    const Shape s =
        shape_of(c.heads, c.q_len, c.k_len, c.head_dims.front(), c.dtypes.front(), false, false);
    try {
      Policy chunked = no_budget();
      chunked.fixed_chunk_keys = std::max<std::int64_t>(16, c.k_len / 16);
      const Sample one = measure(s, device, single, prof, c, c.reps);
      const Sample many_s = measure(s, device, chunked, prof, c, c.reps);
      double bytes = 0;  // state read + write per non-single-pass dispatch
      for (const auto& sub : many_s.report.plan.submissions) {
        // A plan by KV head: each dispatch holds one KV head's query heads.
        const std::int64_t heads = sub.kv_head >= 0 ? s.heads / s.kv_heads : s.heads;
        for (const auto& d : sub.dispatches)
          if (d.mode != Mode::single_pass)
            bytes += 2.0 * static_cast<double>(heads * (d.rect.q1 - d.rect.q0)) *
                     static_cast<double>(s.head_dim + 2) * 4;
      }
      const double extra =
          many_s.ms - one.ms -
          prof.dispatch_overhead_ms * static_cast<double>(count_dispatches(many_s.report) - 1) -
          prof.submission_overhead_ms * static_cast<double>(many_s.report.submissions.size() - 1);
      if (extra > 0 && bytes > 0) prof.state_gbps = std::clamp(bytes / extra * 1e-6, 1.0, 1e4);
      say(format("  running state: %.1f MB moved, %.2f ms extra -> %.1f GB/s%s", bytes * 1e-6,
                 extra, prof.state_gbps, extra > 0 ? "" : " (kept the default)"));
    } catch (const Error& e) {
      say(std::string("  running state: skipped (") + e.what() + ")");
    }
  }

  // A profile without one measured rate would only restate the defaults
  // under a name that says "calibrated".
  if (measured == 0)
    throw Unsupported("[longattn::calibrate] no rate could be measured (see the skipped lines)");
  if (prof.device_name.empty()) {
    core::BackendConfig cfg;
    cfg.threads = c.threads;
    prof.device_name = device == Device::cuda ? core::make_cuda_backend(cfg)->device_name()
                                              : core::make_cpu_backend(cfg)->device_name();
  }
  prof.samples += 1;
  return prof;
}

}  // namespace longattn
