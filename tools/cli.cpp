// Command-line wiring: CLI11 parses argv into the argument structs of
// commands.hpp and one subcommand runs. Everything that can fail maps to an
// exit code here, in one place.
#include <CLI/CLI.hpp>
#include <limits>
#include <new>
#include <optional>
#include <ostream>

#include "commands.hpp"
#include "messages.hpp"
#include "option_checks.hpp"

namespace longattn::cli {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// --device. CLI11's CheckedTransformer prints its map in the error, and the
// enum's uint8_t values come out as raw bytes: a NUL cut the message short
// ("Check nope value in {auto->").
CLI::Validator device_option() {
  return choice_of({{"auto", static_cast<int>(DeviceOption::automatic)},
                    {"cpu", static_cast<int>(DeviceOption::cpu)},
                    {"cuda", static_cast<int>(DeviceOption::cuda)}},
                   "a device");
}

constexpr const char* kBf16Help =
    "bfloat16 in .npy files: NumPy has no bfloat16, so longattn reads '|V2' (what np.save "
    "writes for ml_dtypes.bfloat16) as bfloat16 always, and '<u2' (uint16 raw bits, e.g. "
    "np.save(p, x.view(np.uint16))) when --bf16 is given. bfloat16 outputs are written as '<u2' "
    "raw bits.";

constexpr std::int64_t kMaxThreads = 1024;

// Shape and content options shared by `run` and `plan`. --mask and --sinks
// are completed by the caller because `run` also accepts files for them.
// --causal / --no-causal land in `causal` (unset: the command's default).
void add_shape_options(CLI::App& app, ProblemSpec& s, std::string& dtype,
                       std::optional<bool>& causal, const char* causal_default) {
  const auto positive = integer_in(1, kMaxInt64);
  const auto count = integer_in(0, kMaxInt64);
  app.add_option("--batch,-b", s.batch, "batch size B")->capture_default_str()->transform(positive);
  app.add_option("--heads", s.heads, "query heads Hq")->capture_default_str()->transform(positive);
  app.add_option("--kv-heads", s.kv_heads, "key/value heads Hkv (divides Hq: GQA/MQA)")
      ->capture_default_str()
      ->transform(positive);
  app.add_option("--q-len", s.q_len, "queries Lq")->capture_default_str()->transform(count);
  app.add_option("--k-len", s.k_len, "keys Lk")->capture_default_str()->transform(count);
  app.add_option("--head-dim", s.head_dim, "q/k head dim D")
      ->capture_default_str()
      ->transform(positive);
  app.add_option("--v-head-dim", s.v_head_dim, "v/out head dim Dv (default: D)")
      ->transform(positive);
  app.add_option("--dtype", dtype, "element type of q, k, v, out")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "f16", "bf16", "float32", "float16", "bfloat16"}));
  // Two plain flags rather than CLI11's "--causal,!--no-causal", whose help
  // shows the bool's initial value ("{false}") as if it were the default.
  auto* on = app.add_flag_callback(
      "--causal", [&causal] { causal = true; },
      std::string("bottom-right aligned causal mask (default: ") + causal_default + ")");
  auto* off = app.add_flag_callback(
      "--no-causal", [&causal] { causal = false; }, "no causal mask");
  on->excludes(off);
  app.add_option("--scale", s.scale, "softmax scale (default 1/sqrt(D))")
      ->transform(number_in(-kInf, kInf));
  app.add_option("--seed", s.seed, "seed of the generated inputs")
      ->capture_default_str()
      ->transform(any_uint64());
}

void add_policy_options(CLI::App& app, PolicyArgs& p) {
  const auto positive = integer_in(1, kMaxInt64);
  app.add_option("--budget-ms", p.budget_ms, "time budget per submission in ms; 0 = none")
      ->capture_default_str()
      ->transform(number_in(0, kInf));
  app.add_option("--safety", p.safety, "plan each submission to budget x safety")
      ->capture_default_str()
      ->transform(number_in(0.01, 1.0));
  app.add_option("--chunk-keys", p.chunk_keys, "fixed key-chunk length (default: planner's choice)")
      ->transform(positive);
  app.add_option("--query-rows", p.query_rows,
                 "fixed query-group height (default: planner's choice)")
      ->transform(positive);
  app.add_option("--chunk-threshold", p.chunk_threshold,
                 "Lk at or above which to always chunk, in chunks of at most this many keys")
      ->transform(positive);
  // The library counts bytes in an int64: 2^63 bytes is 8.8e12 MiB.
  app.add_option("--workspace-mb", p.workspace_mb, "running-state memory limit in MiB")
      ->capture_default_str()
      ->transform(number_in(0, 8e12, /*lo_open=*/true));
  app.add_option("--profile", p.profile_path,
                 "device profile to plan with (from `longattn calibrate`)");
  app.add_option("--device", p.device, "backend: auto (CUDA when built and present), cpu, cuda")
      ->transform(device_option());
  app.add_option("--threads", p.threads, "CPU threads; 0 = all")
      ->capture_default_str()
      ->transform(integer_in(0, kMaxThreads, "0 = all hardware threads"));
}

// `--mask` and `--sinks` take a kind/flag for generated inputs and a path
// for the .npy path; decide which once parsing is done.
void resolve_mask_and_sinks(RunArgs& a, const std::string& mask, bool sinks_given,
                            const std::string& sinks) {
  const bool files = !a.q_path.empty();
  if (mask == "none" || mask == "bool" || mask == "additive") {
    a.spec.mask = mask == "none"   ? MaskOption::none
                  : mask == "bool" ? MaskOption::boolean
                                   : MaskOption::additive;
    if (files && mask != "none")
      throw UsageError("--mask " + mask + " generates a mask; with --q give a mask file instead");
  } else if (!mask.empty()) {
    if (!files)
      throw UsageError("--mask " + mask +
                       ": expected none, bool or additive (a mask file needs --q)");
    a.mask_path = mask;
  }
  if (sinks_given) {
    if (sinks.empty()) {
      if (files)
        throw UsageError("--sinks without a file generates sinks; with --q give --sinks s.npy");
      a.spec.sinks = true;
    } else {
      if (!files)
        throw UsageError("--sinks " + sinks +
                         ": a sinks file needs --q (generated runs take --sinks alone)");
      a.sinks_path = sinks;
    }
  }
}

}  // namespace

int main(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  CLI::App app{
      "longattn: exact attention over long contexts, split into submissions that each fit a time "
      "budget."};
  app.name("longattn");
  app.require_subcommand(1);
  app.footer(
      std::string("Exit codes: 0 ok, 1 runtime or file error (or failed check), 2 usage error, "
                  "130 interrupted (Ctrl-C), 143 terminated (SIGTERM).\n") +
      kBf16Help);

  RunArgs run;
  std::string run_dtype = "f32", run_mask = "none", run_sinks;
  auto* run_cmd = app.add_subcommand(
      "run", "run attention on generated inputs or .npy files and report timing and accuracy");
  run_cmd->footer(
      std::string("With --q, shapes and dtype come from the files: q [B,Hq,Lq,D], k [B,Hkv,Lk,D], "
                  "v [B,Hkv,Lk,Dv], mask broadcastable to [B,Hq,Lq,Lk] (bool = keep, or "
                  "additive float), sinks [Hq]. File inputs get no causal mask unless --causal is "
                  "given (PyTorch's and MLX's default); generated inputs are causal unless "
                  "--no-causal. ") +
      kBf16Help);
  std::optional<bool> run_causal, plan_causal;
  add_shape_options(*run_cmd, run.spec, run_dtype, run_causal,
                    "on for generated inputs; off with --q files, as in PyTorch and MLX");
  add_policy_options(*run_cmd, run.policy);
  run_cmd
      ->add_option("--mask", run_mask,
                   "generated mask: none, bool or additive; or with --q, a mask .npy file")
      ->capture_default_str();
  auto* sinks_opt = run_cmd
                        ->add_option("--sinks", run_sinks,
                                     "generate per-head sinks; or with --q, a sinks .npy file [Hq]")
                        ->expected(0, 1);
  run_cmd->add_option("--q", run.q_path, "query .npy [B,Hq,Lq,D] (switches to the file path)");
  run_cmd->add_option("--k", run.k_path, "key .npy [B,Hkv,Lk,D]");
  run_cmd->add_option("--v", run.v_path, "value .npy [B,Hkv,Lk,Dv]");
  run_cmd->add_option("--out", run.out_path, "output .npy [B,Hq,Lq,Dv], dtype of q");
  run_cmd->add_option("--lse", run.lse_path, "log-sum-exp .npy [B,Hq,Lq] float32, natural log");
  run_cmd->add_flag("--bf16", run.bf16_bits, "'<u2' files hold bfloat16 raw bits");
  run_cmd
      ->add_option("--check-rows", run.check_rows,
                   "rows to compare with a float64 reference (default 32 generated, 0 files)")
      ->transform(integer_in(0, kMaxInt64));
  run_cmd
      ->add_option("--tolerance", run.tolerance,
                   "max O error, relative to each row's max |O|, for PASS (default: the tests' "
                   "tolerance for the dtype)")
      ->transform(number_in(0, kInf, /*lo_open=*/true));
  run_cmd->add_option("--report", run.report_path, "write the run report as JSON");
  run_cmd->add_option("--timeline", run.timeline_path,
                      "write an SVG of submission times vs the budget");
  run_cmd->add_option("--save-profile", run.save_profile_path,
                      "save the profile as refined by this run");
  run_cmd->add_option("--repeat", run.repeat, "run N times (warm-up), report the last")
      ->capture_default_str()
      ->transform(integer_in(1, std::numeric_limits<int>::max()));
  run_cmd->add_flag("--all-submissions", run.all_submissions, "list every submission");
  run_cmd->add_flag_callback(
      "--no-progress", [&run] { run.progress = false; }, "no progress bar");

  PlanArgs plan;
  std::string plan_dtype = "f32", plan_mask = "none";
  auto* plan_cmd =
      app.add_subcommand("plan", "print the plan for a shape and policy without running it");
  add_shape_options(*plan_cmd, plan.spec, plan_dtype, plan_causal, "on");
  add_policy_options(*plan_cmd, plan.policy);
  plan_cmd->add_option("--mask", plan_mask, "mask kind: none, bool or additive")
      ->capture_default_str()
      ->check(CLI::IsMember({"none", "bool", "additive"}));
  plan_cmd->add_flag("--sinks", plan.spec.sinks, "per-head sinks");
  plan_cmd->add_flag("--dispatches", plan.dispatches, "list every dispatch of every submission");
  plan_cmd->add_option("--json", plan.json_path, "write the plan as JSON");

  CalibrateArgs cal;
  auto* cal_cmd = app.add_subcommand("calibrate", "measure this device's profile and save it");
  cal_cmd->add_option("--out,-o", cal.out_path, "where to save the profile")->capture_default_str();
  cal_cmd->add_option("--device", cal.device, "auto, cpu or cuda")->transform(device_option());
  cal_cmd->add_option("--threads", cal.threads, "CPU threads; 0 = all")
      ->transform(integer_in(0, kMaxThreads, "0 = all hardware threads"));
  cal_cmd->add_option("--dtypes", cal.dtypes, "dtypes to measure")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "f16", "bf16"}));
  const auto positive = integer_in(1, kMaxInt64);
  cal_cmd->add_option("--head-dims", cal.head_dims, "head dims to measure")
      ->capture_default_str()
      ->transform(positive);
  cal_cmd->add_option("--q-len", cal.q_len, "queries per measurement")
      ->capture_default_str()
      ->transform(positive);
  cal_cmd->add_option("--k-len", cal.k_len, "keys per measurement")
      ->capture_default_str()
      ->transform(positive);
  cal_cmd->add_option("--heads", cal.heads, "query heads per measurement")
      ->capture_default_str()
      ->transform(positive);
  cal_cmd->add_option("--reps", cal.reps, "timed repetitions per measurement (median)")
      ->capture_default_str()
      ->transform(integer_in(1, std::numeric_limits<int>::max()));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e, out, err);
    return code == 0 ? kExitOk : kExitUsage;
  }

  try {
    if (run_cmd->parsed()) {
      run.spec.dtype = parse_dtype(run_dtype);
      // No mask by default for files, as PyTorch's and MLX's attention;
      // generated inputs keep the causal default of the README's examples.
      run.spec.causal = run_causal.value_or(run.q_path.empty());
      resolve_mask_and_sinks(run, run_mask, sinks_opt->count() > 0, run_sinks);
      return run_command(run, out, err);
    }
    if (plan_cmd->parsed()) {
      plan.spec.dtype = parse_dtype(plan_dtype);
      plan.spec.causal = plan_causal.value_or(true);
      plan.spec.mask = plan_mask == "bool"       ? MaskOption::boolean
                       : plan_mask == "additive" ? MaskOption::additive
                                                 : MaskOption::none;
      return plan_command(plan, out, err);
    }
    return calibrate_command(cal, out, err);
  } catch (const UsageError& e) {
    err << "longattn: " << in_flag_terms(e.what(), FieldNames::policy)
        << "\n(see longattn --help)\n";
    return kExitUsage;
  } catch (const std::bad_alloc&) {
    // Host arrays of the tool say their size (HostArray); this is some
    // other allocation, in the library or a container.
    err << "longattn: out of host memory (std::bad_alloc)\n";
    return kExitRuntime;
  } catch (const std::exception& e) {
    // run and plan take every policy field from a flag; calibrate sets its
    // own policies, so there the library's names are the true ones.
    err << "longattn: "
        << (cal_cmd->parsed() ? without_prefix(e.what())
                              : in_flag_terms(e.what(), FieldNames::policy))
        << "\n";
    return kExitRuntime;
  }
}

}  // namespace longattn::cli
