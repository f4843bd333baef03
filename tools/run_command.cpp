// `longattn run`: attention on generated or .npy inputs under a time budget,
// with the plan, per-submission timing, throughput and a float64 check.
#include <fmt/format.h>
#include <fmt/ostream.h>

#include <algorithm>
#include <csignal>
#include <ostream>
#include <set>

#include "atomic_file.hpp"
#include "commands.hpp"
#include "half.hpp"
#include "messages.hpp"
#include "npy.hpp"
#include "output_paths.hpp"
#include "progress.hpp"
#include "reference_check.hpp"
#include "report.hpp"
#include "summary.hpp"
#include "timeline.hpp"

namespace longattn::cli {
namespace {

constexpr std::int64_t kDefaultCheckRows = 32;

std::string dims(const std::vector<std::int64_t>& s) {
  std::string out = "(";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + ")";
}

[[noreturn]] void shape_error(const std::string& path, const std::string& msg) {
  throw NpyError(NpyErrorKind::shape_mismatch, "[longattn] " + path + ": " + msg);
}

// Reads q, k, v (and mask, sinks) and checks they describe one problem, so a
// wrong file is reported by its path rather than as a library argument error.
Workload load_workload(const RunArgs& a, ProblemSpec& spec) {
  const NpyReadOptions ro{.u2_is_bf16 = a.bf16_bits};
  Workload w;
  w.q = read_npy(a.q_path, ro);
  w.k = read_npy(a.k_path, ro);
  w.v = read_npy(a.v_path, ro);
  for (auto [arr, path] : {std::pair{&w.q, &a.q_path}, {&w.k, &a.k_path}, {&w.v, &a.v_path}}) {
    if (arr->shape.size() != 4)
      shape_error(*path, "expected a 4-D array [batch, heads, length, head_dim], got shape " +
                             dims(arr->shape));
    if (arr->dtype == DType::boolean)
      throw NpyError(NpyErrorKind::unsupported_dtype,
                     "[longattn] " + *path +
                         ": dtype boolean is not a float type (q, k and v share one of float32, "
                         "float16, bfloat16; bool is for --mask files)");
    if (arr->dtype != w.q.dtype)
      throw NpyError(NpyErrorKind::unsupported_dtype,
                     "[longattn] " + *path + ": dtype " + dtype_name(arr->dtype) +
                         " does not match " + a.q_path + "'s " + dtype_name(w.q.dtype) +
                         " (q, k and v share one float dtype)");
  }
  const auto &qs = w.q.shape, &ks = w.k.shape, &vs = w.v.shape;
  if (ks[0] != qs[0] || ks[3] != qs[3])
    shape_error(a.k_path, "shape " + dims(ks) + " does not fit " + a.q_path + " " + dims(qs) +
                              " (want [" + std::to_string(qs[0]) + ", Hkv, Lk, " +
                              std::to_string(qs[3]) + "])");
  if (vs[0] != ks[0] || vs[1] != ks[1] || vs[2] != ks[2])
    shape_error(a.v_path, "shape " + dims(vs) + " does not fit " + a.k_path + " " + dims(ks) +
                              " (want [" + std::to_string(ks[0]) + ", " + std::to_string(ks[1]) +
                              ", " + std::to_string(ks[2]) + ", Dv])");
  if (ks[1] == 0 || qs[1] % ks[1] != 0)
    shape_error(a.k_path, "kv heads " + std::to_string(ks[1]) + " do not divide the heads of " +
                              a.q_path + ", " + std::to_string(qs[1]));
  spec.batch = qs[0];
  spec.heads = qs[1];
  spec.q_len = qs[2];
  spec.head_dim = qs[3];
  spec.kv_heads = ks[1];
  spec.k_len = ks[2];
  spec.v_head_dim = vs[3];
  spec.dtype = w.q.dtype;

  if (!a.mask_path.empty()) {
    w.mask = read_npy(a.mask_path, ro);
    if (w.mask.shape.empty() || w.mask.shape.size() > 4)
      shape_error(a.mask_path, "a mask has 1 to 4 dims, got shape " + dims(w.mask.shape));
    // NumPy broadcasting: a lower-rank mask lines up with the trailing dims.
    w.mask.shape.insert(w.mask.shape.begin(), 4 - w.mask.shape.size(), 1);
    const std::int64_t full[4] = {qs[0], qs[1], qs[2], ks[2]};
    for (int d = 0; d < 4; ++d)
      if (w.mask.shape[d] != 1 && w.mask.shape[d] != full[d])
        shape_error(a.mask_path, "shape " + dims(w.mask.shape) + " does not broadcast to " +
                                     dims({full[0], full[1], full[2], full[3]}));
    spec.mask = w.mask.dtype == DType::boolean ? MaskOption::boolean : MaskOption::additive;
  }
  if (!a.sinks_path.empty()) {
    HostArray s = read_npy(a.sinks_path, ro);
    require_shape(s, std::vector<std::int64_t>{qs[1]}, a.sinks_path);
    if (s.dtype == DType::boolean)
      throw NpyError(NpyErrorKind::unsupported_dtype,
                     "[longattn] " + a.sinks_path + ": sinks must be float, got bool");
    // The library takes float32 sinks; widen f16/bf16 here.
    w.sinks = HostArray(DType::float32, s.shape, "sinks");
    for (std::int64_t i = 0; i < s.numel(); ++i)
      w.sinks.as<float>()[i] = static_cast<float>(element_as_double(s, i));
    spec.sinks = true;
  }
  w.causal = spec.causal;
  w.scale = spec.scale;
  allocate_outputs(w, /*with_lse=*/true);
  return w;
}

void check_file_args(const RunArgs& a) {
  const bool files = !a.q_path.empty();
  if (files && (a.k_path.empty() || a.v_path.empty() || a.out_path.empty()))
    throw UsageError("--q needs --k, --v and --out as well");
  if (!files && (!a.k_path.empty() || !a.v_path.empty() || !a.mask_path.empty() ||
                 !a.sinks_path.empty() || !a.out_path.empty() || !a.lse_path.empty()))
    throw UsageError("--k, --v, --mask, --sinks, --out and --lse need --q (the .npy path)");
  // Before reading anything: a bad output path fails now, not after the run.
  check_paths({{"--out", a.out_path},
               {"--lse", a.lse_path},
               {"--report", a.report_path},
               {"--timeline", a.timeline_path},
               {"--save-profile", a.save_profile_path}},
              {{"--q", a.q_path},
               {"--k", a.k_path},
               {"--v", a.v_path},
               {"--mask", a.mask_path},
               {"--sinks", a.sinks_path},
               {"--profile", a.policy.profile_path}},
              {{"--save-profile", "--profile"}});
}

// Generated inputs: the library's argument errors become usage errors
// (exit 2) naming the flags, found by planning before anything is allocated.
void check_generated_shape(const ProblemSpec& spec, const PolicyArgs& policy, Device device) {
  const ShapeViews sv = shape_views(spec, device);
  AttentionOptions probe;
  probe.causal = spec.causal;
  probe.scale = spec.scale;
  probe.mask = sv.mask;
  probe.sinks = sv.sinks;
  probe.policy = policy.policy();
  probe.backend = device == Device::cuda ? BackendKind::cuda : BackendKind::cpu;
  probe.threads = policy.threads;
  try {
    (void)plan_attention(sv.q, sv.k, sv.v, sv.out, probe);
  } catch (const InvalidArgument& e) {
    throw UsageError(in_flag_terms(e.what(), FieldNames::policy_and_shape));
  }
}

const char* signal_name(int sig) { return sig == SIGTERM ? "SIGTERM" : "SIGINT (Ctrl-C)"; }

std::string row_ranges(const RunReport& r) {
  std::string rows;
  for (const auto& [q0, q1] : r.finished_rows) rows += fmt::format(" [{}, {})", q0, q1);
  return rows.empty() ? " none" : rows;
}

// A run that stopped part-way (cancelled, or a failure after work began):
// what its partial report says ran, which rows are final, and the report
// file if asked for. The totals are the report's own, not recomputed.
int report_stopped_run(const Error& e, const RunReport& partial, const RunArgs& a,
                       const ProblemSpec& spec, double planned_flops, int stop_signal,
                       std::set<std::string>& said, std::ostream& out, std::ostream& err) {
  const bool cancelled = e.code() == ErrorCode::cancelled;
  const std::size_t n = partial.submissions.size();
  fmt::print(out,
             "{} after {} submission{}, {:.0f}% of the work; measured {:.1f} ms, {:.2f} GFLOP{}; "
             "final query rows:{}; {}\n",
             cancelled ? "cancelled" : "failed", n, n == 1 ? "" : "s",
             planned_flops > 0 ? 100 * partial.total_flops / planned_flops : 0.0, partial.total_ms,
             partial.total_flops * 1e-9,
             partial.budget_ms > 0 ? fmt::format(", {} over the {:g} ms budget",
                                                 partial.budget_misses, partial.budget_ms)
                                   : "",
             row_ranges(partial), a.q_path.empty() ? "no check" : "no output written");
  print_submissions(out, partial, a.all_submissions);
  print_warnings(err, partial.warnings, said);
  if (!a.report_path.empty()) {
    auto j = run_report_json(partial);
    j["problem"] = spec.describe();
    j["error"] = without_prefix(e.what());
    write_json(a.report_path, j);
    fmt::print(out, "wrote {}\n", a.report_path);
  }
  if (!a.timeline_path.empty()) {
    write_text(a.timeline_path, timeline_svg(partial, a.policy.safety,
                                             "longattn run (stopped): " + spec.describe()));
    fmt::print(out, "wrote {}\n", a.timeline_path);
  }
  if (cancelled && stop_signal != 0)
    fmt::print(err, "longattn: stopped by {} at a submission boundary\n", signal_name(stop_signal));
  else
    fmt::print(err, "longattn: {}\n", in_flag_terms(e.what(), FieldNames::policy));
  if (cancelled && stop_signal != 0) return kExitSignalBase + stop_signal;
  return kExitRuntime;
}

}  // namespace

int run_command(const RunArgs& a, std::ostream& out, std::ostream& err) {
  check_file_args(a);
  const bool files = !a.q_path.empty();
  const Device device = resolve_device(a.policy.device);
  // Before the inputs are read: a bad profile fails in a second, not after
  // gigabytes of input.
  std::optional<DeviceProfile> profile = load_profile(a.policy.profile_path);
  if (!profile && !a.save_profile_path.empty())
    profile = default_profile(device == Device::cuda ? BackendKind::cuda : BackendKind::cpu);

  ProblemSpec spec = a.spec;
  Workload w;
  if (files) {
    w = load_workload(a, spec);
  } else {
    check_generated_shape(spec, a.policy, device);
    w = generate_workload(spec);
  }
  w.place(device);

  AttentionOptions opt = w.options();
  opt.policy = a.policy.policy();
  opt.threads = a.policy.threads;
  opt.profile = profile ? &*profile : nullptr;

  fmt::print(
      out, "longattn run: {} on {}{}\n", spec.describe(), device_name(device),
      files ? " (from " + a.q_path + ")" : " (generated, seed " + std::to_string(spec.seed) + ")");
  const Plan plan = plan_attention(w.q_view, w.k_view, w.v_view, w.out_view, opt);
  print_plan(out, plan, opt.policy, /*dispatches=*/false);
  std::set<std::string> said;  // warnings printed so far
  print_warnings(err, plan.warnings, said);
  // Piped or redirected, stdout is block-buffered: show the plan before the
  // run rather than with its results minutes later.
  out.flush();

  RunReport report;
  ProgressBar bar(err, a.progress && stderr_is_terminal());
  bar.set_total_flops(plan.total_flops);
  opt.progress = bar.callback();
  opt.report = &report;
  const int repeat = std::max(1, a.repeat);
  try {
    for (int i = 0; i < repeat; ++i) attention(w.q_view, w.k_view, w.v_view, w.out_view, opt);
  } catch (const Error& e) {
    if (!e.partial_report()) throw;  // failed before touching the output
    bar.finish();
    return report_stopped_run(e, *e.partial_report(), a, spec, plan.total_flops, bar.stop_signal(),
                              said, out, err);
  }
  bar.finish();
  if (bar.stop_signal() != 0)
    fmt::print(err,
               "longattn: {} came after the last submission; finishing the check and the outputs "
               "(send it again to stop at once)\n",
               signal_name(bar.stop_signal()));
  w.fetch_outputs();
  print_warnings(err, report.warnings, said);

  const double gflops = report.total_ms > 0 ? report.total_flops / report.total_ms * 1e-6 : 0;
  fmt::print(out,
             "run on {}{}: {} submission{}, measured {:.1f} ms (wall {:.1f} ms), {:.2f} GFLOP, "
             "{}\n",
             report.backend, repeat > 1 ? fmt::format(" (last of {} runs)", repeat) : "",
             report.submissions.size(), report.submissions.size() == 1 ? "" : "s", report.total_ms,
             report.wall_ms, report.total_flops * 1e-9,
             gflops >= 1e4 ? fmt::format("{:.1f} TFLOP/s", gflops * 1e-3)
                           : fmt::format("{:.1f} GFLOP/s", gflops));
  print_submissions(out, report, a.all_submissions);
  if (report.budget_ms > 0) {
    double worst = 0;
    for (const auto& s : report.submissions) worst = std::max(worst, s.measured_ms);
    fmt::print(out, "budget: {} of {} submissions over {:g} ms (slowest {:.1f} ms), {} re-plan{}\n",
               report.budget_misses, report.submissions.size(), report.budget_ms, worst,
               report.replans, report.replans == 1 ? "" : "s");
  }

  int rc = kExitOk;
  const std::int64_t rows = a.check_rows >= 0 ? a.check_rows : (files ? 0 : kDefaultCheckRows);
  if (rows > 0) {
    const CheckResult c = check_against_reference(w, rows, spec.seed, a.tolerance);
    if (c.rows == 0)
      fmt::print(out, "check: no query rows to compare (Lq = 0 or no heads)\n");
    else
      fmt::print(out,
                 "check: {} rows vs float64 reference: max err O {:.2e} (of each row's max "
                 "|O|; worst {}), max err LSE {:.2e}; tolerance {:.2e} / {:.2e}: {}\n",
                 c.all_rows ? fmt::format("all {}", c.rows) : fmt::format("{} sampled", c.rows),
                 c.max_out_err, c.worst_row, c.max_lse_err, c.out_tolerance, c.lse_tolerance,
                 c.pass ? "PASS" : "FAIL");
    if (!c.pass) rc = kExitRuntime;
  }

  if (files) {
    write_npy(a.out_path, w.out.dtype, w.out.shape, w.out.data.data());
    if (!a.lse_path.empty()) write_npy(a.lse_path, DType::float32, w.lse.shape, w.lse.data.data());
    fmt::print(out, "wrote {}{}\n", a.out_path, a.lse_path.empty() ? "" : " and " + a.lse_path);
  }
  if (!a.report_path.empty()) {
    auto j = run_report_json(report);
    j["problem"] = spec.describe();
    write_json(a.report_path, j);
    fmt::print(out, "wrote {}\n", a.report_path);
  }
  if (!a.timeline_path.empty()) {
    write_text(a.timeline_path,
               timeline_svg(report, opt.policy.safety, "longattn run: " + spec.describe()));
    fmt::print(out, "wrote {}\n", a.timeline_path);
  }
  if (!a.save_profile_path.empty()) {
    write_atomically(a.save_profile_path, [&](const std::string& tmp) { profile->save(tmp); });
    fmt::print(out, "wrote {}\n", a.save_profile_path);
  }
  return rc;
}

}  // namespace longattn::cli
