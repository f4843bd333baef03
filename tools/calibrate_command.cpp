// `longattn calibrate`: measures a DeviceProfile and saves it.
//
// Fixed costs come from tiny problems whose compute is negligible, run with
// plans of different shapes (one dispatch; many dispatches in few
// submissions; one dispatch per submission), fitted by least squares:
//   measured ms = submissions * submission_overhead + dispatches * dispatch_overhead.
// Throughput per rate key ("dtype/d<D>/<full|causal|masked>") comes from
// single-pass runs of a mid-size problem, minus those fixed costs. The
// running-state bandwidth comes from the extra time of a finely chunked run
// over the single-pass one, divided by the state bytes it moved.
#include <fmt/format.h>
#include <fmt/ostream.h>

#include <algorithm>
#include <cmath>
#include <ostream>

#include "atomic_file.hpp"
#include "commands.hpp"
#include "messages.hpp"
#include "output_paths.hpp"

namespace longattn::cli {
namespace {

struct Sample {
  double ms = 0;  // median measured total over the repetitions
  RunReport report;
};

// Runs one configuration `reps` times after a warm-up. Every run gets a
// scratch copy of the profile, so the measurements do not feed back into
// the plan they are measuring.
Sample measure(const ProblemSpec& spec, Device device, const Policy& policy,
               const DeviceProfile& base, int threads, int reps) {
  Workload w = generate_workload(spec);
  w.place(device);
  AttentionOptions opt = w.options();
  opt.policy = policy;
  opt.threads = threads;
  std::vector<double> times;
  Sample s;
  for (int i = 0; i <= reps; ++i) {
    DeviceProfile scratch = base;
    opt.profile = &scratch;
    opt.report = &s.report;
    attention(w.q_view, w.k_view, w.v_view, w.out_view, opt);
    if (i > 0) times.push_back(s.report.total_ms);
  }
  std::sort(times.begin(), times.end());
  s.ms = times[times.size() / 2];
  return s;
}

// Batch 1, GQA 4:1 where the head count allows (the common LLM shape).
ProblemSpec spec_of(std::int64_t heads, std::int64_t q_len, std::int64_t k_len, std::int64_t hd,
                    DType dt, bool causal, MaskOption mask) {
  ProblemSpec s;
  s.batch = 1;
  s.heads = heads;
  s.kv_heads = heads % 4 == 0 ? heads / 4 : heads;
  s.q_len = q_len;
  s.k_len = k_len;
  s.head_dim = hd;
  s.dtype = dt;
  s.causal = causal;
  s.mask = mask;
  return s;
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

// Every (dtype, head dim) asked for must be one this backend serves, checked
// by planning it before anything is measured: otherwise the run would skip
// them all and save a profile with no rates in it.
void check_supported(const CalibrateArgs& a, Device device) {
  for (const std::string& name : a.dtypes)
    for (std::int64_t hd : a.head_dims) {
      const ProblemSpec spec =
          spec_of(a.heads, a.q_len, a.k_len, hd, parse_dtype(name), false, MaskOption::none);
      const ShapeViews sv = shape_views(spec, device);
      AttentionOptions opt;
      opt.backend = device == Device::cuda ? BackendKind::cuda : BackendKind::cpu;
      opt.policy = no_budget();
      opt.threads = a.threads;
      try {
        (void)plan_attention(sv.q, sv.k, sv.v, sv.out, opt);
      } catch (const Error& e) {
        if (e.code() != ErrorCode::invalid_argument && e.code() != ErrorCode::unsupported) throw;
        throw UsageError(
            fmt::format("--head-dims {} with --dtypes {}: not supported on {}; the "
                        "library says: {}",
                        hd, name, device_name(device), without_prefix(e.what())));
      }
    }
}

}  // namespace

int calibrate_command(const CalibrateArgs& a, std::ostream& out, std::ostream& /*err*/) {
  if (a.reps < 1) throw UsageError("--reps must be at least 1");
  if (a.dtypes.empty() || a.head_dims.empty())
    throw UsageError("--dtypes and --head-dims need a value");
  check_paths({{"--out", a.out_path}}, {});
  const Device device = resolve_device(a.device);
  const BackendKind backend = device == Device::cuda ? BackendKind::cuda : BackendKind::cpu;
  std::vector<DType> dtypes;
  for (const auto& s : a.dtypes) dtypes.push_back(parse_dtype(s));
  check_supported(a, device);

  DeviceProfile prof = default_profile(backend);
  fmt::print(out, "longattn calibrate: {} ({} reps after a warm-up)\n", backend_name(backend),
             a.reps);

  // 1. Fixed costs, on the first dtype and head dim asked for.
  ProblemSpec tiny =
      spec_of(1, 16, 64, a.head_dims.front(), dtypes.front(), false, MaskOption::none);
  std::vector<std::array<double, 3>> rows;  // (submissions, dispatches, ms)
  auto add = [&](const char* name, Policy p) {
    try {
      const Sample s = measure(tiny, device, p, prof, a.threads, std::max(a.reps, 5));
      const double subs = static_cast<double>(s.report.submissions.size());
      const double disp = static_cast<double>(count_dispatches(s.report));
      rows.push_back({subs, disp, s.ms});
      fmt::print(out, "  fixed cost, {:<27} {:>4.0f} submissions {:>4.0f} dispatches {:>9.3f} ms\n",
                 name, subs, disp, s.ms);
    } catch (const Error& e) {
      fmt::print(out, "  fixed cost, {}: skipped ({})\n", name, e.what());
    }
  };
  Policy single = no_budget();
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
    fmt::print(out,
               "  (one dispatch per submission in every plan: fixed cost charged to dispatches)\n");
  }
  fmt::print(out, "  submission overhead {:.4f} ms, dispatch overhead {:.4f} ms\n",
             prof.submission_overhead_ms, prof.dispatch_overhead_ms);

  // 2. Throughput per rate key.
  struct Variant {
    const char* name;
    bool causal;
    MaskOption mask;
  };
  const Variant variants[] = {{"full", false, MaskOption::none},
                              {"causal", true, MaskOption::none},
                              {"masked", false, MaskOption::boolean}};
  fmt::print(out, "  {:<24} {:>10} {:>10}\n", "rate key", "ms", "GFLOP/s");
  std::size_t measured = 0;
  for (DType dt : dtypes) {
    for (std::int64_t hd : a.head_dims) {
      for (const auto& var : variants) {
        const ProblemSpec spec = spec_of(a.heads, a.q_len, a.k_len, hd, dt, var.causal, var.mask);
        const std::string key =
            DeviceProfile::rate_key(dt, hd, var.causal, var.mask != MaskOption::none);
        try {
          const Sample s = measure(spec, device, single, prof, a.threads, a.reps);
          const double compute_ms = s.ms - prof.submission_overhead_ms - prof.dispatch_overhead_ms;
          const double g = s.report.total_flops / std::max(compute_ms, 1e-6) * 1e-6;
          prof.gflops[key] = g;
          ++measured;
          fmt::print(out, "  {:<24} {:>10.2f} {:>10.1f}\n", key, s.ms, g);
        } catch (const Error& e) {
          fmt::print(out, "  {:<24} skipped ({})\n", key, e.what());
        }
      }
    }
  }

  // 3. Running-state bandwidth: a chunked run over the single-pass one.
  {
    const ProblemSpec spec = spec_of(a.heads, a.q_len, a.k_len, a.head_dims.front(), dtypes.front(),
                                     false, MaskOption::none);
    try {
      Policy chunked = no_budget();
      chunked.fixed_chunk_keys = std::max<std::int64_t>(16, a.k_len / 16);
      const Sample one = measure(spec, device, single, prof, a.threads, a.reps);
      const Sample many_s = measure(spec, device, chunked, prof, a.threads, a.reps);
      double bytes = 0;  // state read + write per non-single-pass dispatch
      for (const auto& sub : many_s.report.plan.submissions)
        for (const auto& d : sub.dispatches)
          if (d.mode != Mode::single_pass)
            bytes += 2.0 * static_cast<double>(spec.batch * spec.heads * (d.rect.q1 - d.rect.q0)) *
                     static_cast<double>(spec.dv() + 2) * 4;
      const double extra =
          many_s.ms - one.ms -
          prof.dispatch_overhead_ms * static_cast<double>(count_dispatches(many_s.report) - 1) -
          prof.submission_overhead_ms * static_cast<double>(many_s.report.submissions.size() - 1);
      if (extra > 0 && bytes > 0) prof.state_gbps = std::clamp(bytes / extra * 1e-6, 1.0, 1e4);
      fmt::print(out, "  running state: {:.1f} MB moved, {:.2f} ms extra -> {:.1f} GB/s{}\n",
                 bytes * 1e-6, extra, prof.state_gbps, extra > 0 ? "" : " (kept the default)");
    } catch (const Error& e) {
      fmt::print(out, "  running state: skipped ({})\n", e.what());
    }
  }

  // A profile without one measured rate would only restate the defaults
  // under a name that says "calibrated".
  if (measured == 0)
    throw Error(
        ErrorCode::unsupported,
        "no rate could be measured (see the skipped lines above); " + a.out_path + " not written");
  if (prof.device_name.empty())
    prof.device_name = device == Device::cuda ? cuda_device_description() : "cpu";
  prof.samples += 1;
  write_atomically(a.out_path, [&](const std::string& tmp) { prof.save(tmp); });
  fmt::print(out, "wrote {}\n", a.out_path);
  return kExitOk;
}

}  // namespace longattn::cli
