// bench_budget: issue 3's budget table on the CPU backend. For each shape it
// runs attention() once without a budget (one single-pass dispatch) and once
// per budget, and prints per run: submissions, max and median measured
// submission ms against the budget, misses (after the first submission and
// in total), re-plans, total wall ms and the overhead against the single pass,
// and the same in process CPU time (less sensitive to a shared machine).
//
// Shapes (float32, B = 1, Hq = 32, Hkv = 8, D = 128, causal):
//   square   Lq = Lk = 16384
//   prefill  Lq = 2048 against Lk = 65536 (a prefill step on a long cache)
// --quick divides the lengths by 4 (4096 and 512 x 16384) for smoke tests.
//
// One DeviceProfile is shared by the runs of a process, as attention()'s
// process-wide profile would be in an application: it starts from the
// default guess (or --profile PATH) and every run refines it. Per shape the
// single pass runs first, then (without --profile) one "cold" budgeted run
// on a fresh copy of the default guess, whose first submission shows the
// calibration, then the budgets 200, 50, 10 ms on the shared profile.
//
// --pairs N then runs, per budget, N pairs of a single pass and a budgeted
// call back to back (in alternating order) and prints the median of the
// pairs' overheads: on a shared machine the table's single pass and
// budgeted runs are seconds apart and drift by several percent, which a
// pair shares. It also prints the overhead of the fastest budgeted call
// over the fastest single pass, the estimate least disturbed by a shared
// machine (whose interference only adds time).
//
// --splits 48x3072,192x768 runs the split alone: fixed query groups x key
// chunks (Policy::fixed_query_rows, fixed_chunk_keys), no budget, so no
// timing or re-planning, to separate what the split costs from what the
// budget's machinery does.
//
//   bench_budget [--quick] [--threads N] [--budgets 10,50,200] [--shape square|prefill]
//                [--pairs N] [--splits RxK,...] [--profile PATH] [--save-profile PATH]
//                [--json PATH]
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "bench/bench_util.hpp"
#include "bench/cases.hpp"
#include "bench/cli.hpp"
#include "longattn/longattn.hpp"

namespace lb = longattn::bench;

namespace {

struct Shape {
  std::string name;
  std::int64_t B, Hq, Hkv, Lq, Lk, D;
};

struct Args {
  bool quick = false;
  int threads = 0, pairs = 0;
  std::vector<double> budgets{200, 50, 10};
  std::vector<std::string> splits;  // "ROWSxKEYS"
  std::string shape, profile, save_profile, json;
};

// "48x3072" as (48, 3072); exits with a message naming the option otherwise.
std::pair<std::int64_t, std::int64_t> split_of(const std::string& text) {
  const std::size_t x = text.find('x');
  char* end = nullptr;
  const long long rows = x == std::string::npos ? 0 : std::strtoll(text.c_str(), &end, 10);
  const long long keys =
      rows > 0 && end == text.c_str() + x ? std::strtoll(text.c_str() + x + 1, &end, 10) : 0;
  if (rows <= 0 || keys <= 0 || *end != '\0') {
    std::fprintf(stderr, "bench_budget: --splits %s: each must be ROWSxKEYS, e.g. 48x3072\n",
                 text.c_str());
    std::exit(2);
  }
  return {rows, keys};
}

Args parse(int argc, char** argv) {
  Args a;
  CLI::App app{"bench_budget: budgeted chunking on the CPU backend"};
  app.add_flag("--quick", a.quick, "lengths / 4, for smoke tests");
  app.add_option("--threads", a.threads, "CPU threads (0 = all hardware threads)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--budgets", a.budgets, "per-submission budgets in ms")
      ->delimiter(',')
      ->check(CLI::Range(0.001, 1e6));
  app.add_option("--shape", a.shape, "one shape only")->check(CLI::IsMember({"square", "prefill"}));
  app.add_option("--pairs", a.pairs,
                 "then N back-to-back pairs (single pass, budgeted) per budget: median overhead")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--splits", a.splits,
                 "then each fixed split ROWSxKEYS (query rows x key chunk) alone, no budget")
      ->delimiter(',');
  app.add_option("--profile", a.profile, "start from this saved device profile");
  app.add_option("--save-profile", a.save_profile, "save the refined profile here");
  app.add_option("--json", a.json, "write the runs as JSON here");
  lb::parse_or_exit(app, argc, argv);
  for (const std::string& sp : a.splits) split_of(sp);  // a bad one exits now, not after runs
  return a;
}

struct Run {
  std::string label;
  double budget_ms = 0;
  longattn::RunReport rep;
  double cpu_ms = 0;  // process CPU time of the call, all threads
};

struct Stats {
  std::size_t subs = 0;
  double max_ms = 0, median_ms = 0;
  int misses_after_first = 0, misses = 0;
};

Stats stats(const Run& r) {
  Stats s;
  std::vector<double> t;
  for (std::size_t i = 0; i < r.rep.submissions.size(); ++i) {
    const double ms = r.rep.submissions[i].measured_ms;
    t.push_back(ms);
    s.max_ms = std::max(s.max_ms, ms);
    if (r.budget_ms > 0 && ms > r.budget_ms) {
      ++s.misses;
      if (i > 0) ++s.misses_after_first;
    }
  }
  s.subs = t.size();
  s.median_ms = lb::median(t);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  const int threads = lb::hardware_threads(a.threads);
  const std::int64_t f = a.quick ? 4 : 1;
  std::vector<Shape> shapes;
  if (a.shape.empty() || a.shape == "square")
    shapes.push_back({"square", 1, 32, 8, 16384 / f, 16384 / f, 128});
  if (a.shape.empty() || a.shape == "prefill")
    shapes.push_back({"prefill", 1, 32, 8, 2048 / f, 65536 / f, 128});

  longattn::DeviceProfile prof = a.profile.empty()
                                     ? longattn::default_profile(longattn::BackendKind::cpu)
                                     : longattn::DeviceProfile::load(a.profile);
  std::printf(
      "longattn CPU backend, budgeted chunking, %s, %d threads, float32, causal, B=1 Hq=32 Hkv=8 "
      "D=128%s\n",
      lb::cpu_model().c_str(), threads, a.quick ? " (--quick shapes)" : "");
  std::printf("profile: %s\n",
              a.profile.empty() ? "default guess, refined by each run" : a.profile.c_str());

  nlohmann::json out_json = nlohmann::json::array();
  for (const Shape& sh : shapes) {
    const auto dt = longattn::DType::float32;
    lb::Buffer q = lb::random_buffer(dt, sh.B * sh.Hq * sh.Lq * sh.D, 11);
    lb::Buffer k = lb::random_buffer(dt, sh.B * sh.Hkv * sh.Lk * sh.D, 12);
    lb::Buffer v = lb::random_buffer(dt, sh.B * sh.Hkv * sh.Lk * sh.D, 13);
    lb::Buffer o = lb::random_buffer(dt, sh.B * sh.Hq * sh.Lq * sh.D, 14);
    const auto qv = longattn::contiguous(q.data(), dt, {sh.B, sh.Hq, sh.Lq, sh.D});
    const auto kv = longattn::contiguous(k.data(), dt, {sh.B, sh.Hkv, sh.Lk, sh.D});
    const auto vv = longattn::contiguous(v.data(), dt, {sh.B, sh.Hkv, sh.Lk, sh.D});
    const auto ov = longattn::contiguous(o.data(), dt, {sh.B, sh.Hq, sh.Lq, sh.D});
    const double flops = longattn::attention_flops(sh.B, sh.Hq, sh.Lq, sh.Lk, sh.D, sh.D, true);

    auto run = [&](const std::string& label, double budget, longattn::DeviceProfile& profile,
                   std::pair<std::int64_t, std::int64_t> split = {0, 0}) {
      longattn::AttentionOptions opt;
      opt.causal = true;
      opt.threads = threads;
      opt.profile = &profile;
      opt.policy.budget_ms = budget;
      opt.policy.fixed_query_rows = split.first;
      opt.policy.fixed_chunk_keys = split.second;
      Run r{label, budget, {}, 0};
      opt.report = &r.rep;
      const double c0 = lb::cpu_ms();
      longattn::attention(qv, kv, vv, ov, opt);
      r.cpu_ms = lb::cpu_ms() - c0;
      return r;
    };

    std::printf("\n%s: Lq=%lld Lk=%lld, %.3g GFLOP\n", sh.name.c_str(),
                static_cast<long long>(sh.Lq), static_cast<long long>(sh.Lk), flops / 1e9);
    std::printf("%-12s %6s %9s %10s %9s %13s %7s %7s %10s %9s %9s %9s %12s\n", "budget ms", "subs",
                "max ms", "median ms", "max/bud", "miss>1st/all", "replan", "query", "total ms",
                "overhead", "GFLOP/s", "cpu s", "cpu overhead");
    double single_ms = 0, single_cpu_ms = 0;
    auto report = [&](const Run& r) {
      const Stats s = stats(r);
      const double overhead = single_ms > 0 ? r.rep.wall_ms / single_ms - 1 : 0;
      char ratio[32] = "-";
      if (r.budget_ms > 0) std::snprintf(ratio, sizeof ratio, "%.2f", s.max_ms / r.budget_ms);
      char miss[32] = "-";
      if (r.budget_ms > 0)
        std::snprintf(miss, sizeof miss, "%d/%d", s.misses_after_first, s.misses);
      const double cpu_overhead = single_cpu_ms > 0 ? r.cpu_ms / single_cpu_ms - 1 : 0;
      std::printf(
          "%-12s %6zu %9.1f %10.1f %9s %13s %7d %7lld %10.0f %8.1f%% %9.1f %9.1f %11.1f%%\n",
          r.label.c_str(), s.subs, s.max_ms, s.median_ms, ratio, miss, r.rep.replans,
          static_cast<long long>(r.rep.plan.query_rows), r.rep.wall_ms, 100 * overhead,
          flops / (r.rep.wall_ms * 1e6), r.cpu_ms / 1e3, 100 * cpu_overhead);
      std::fflush(stdout);
      nlohmann::json e{{"shape", sh.name},
                       {"Lq", sh.Lq},
                       {"Lk", sh.Lk},
                       {"label", r.label},
                       {"budget_ms", r.budget_ms},
                       {"submissions", s.subs},
                       {"max_ms", s.max_ms},
                       {"median_ms", s.median_ms},
                       {"misses_after_first", s.misses_after_first},
                       {"misses", s.misses},
                       {"replans", r.rep.replans},
                       {"query_rows", r.rep.plan.query_rows},
                       {"chunk_keys", r.rep.plan.chunk_keys},
                       {"wall_ms", r.rep.wall_ms},
                       {"total_ms", r.rep.total_ms},
                       {"overhead", overhead},
                       {"cpu_ms", r.cpu_ms},
                       {"cpu_overhead", cpu_overhead},
                       {"threads", threads}};
      std::vector<double> measured, predicted;
      std::vector<std::size_t> dispatches;
      for (const auto& sr : r.rep.submissions) {
        measured.push_back(sr.measured_ms);
        predicted.push_back(sr.predicted_ms);
        dispatches.push_back(sr.dispatches);
      }
      e["measured_ms"] = measured;
      e["predicted_ms"] = predicted;
      e["dispatches"] = dispatches;
      out_json.push_back(e);
      if (!a.json.empty())
        std::ofstream(a.json) << out_json.dump(1) << "\n";  // keep partial results
    };

    const Run single = run("single pass", 0, prof);
    single_ms = single.rep.wall_ms;
    single_cpu_ms = single.cpu_ms;
    report(single);
    // Cold: a budgeted run on a fresh copy of the starting profile, so its
    // first submission shows the calibration from the default guess.
    if (a.profile.empty()) {
      longattn::DeviceProfile fresh = longattn::default_profile(longattn::BackendKind::cpu);
      const double b = a.budgets.size() > 1 ? a.budgets[1] : a.budgets.front();
      report(run(std::to_string(static_cast<int>(b)) + " (cold)", b, fresh));
    }
    for (double b : a.budgets) report(run(std::to_string(static_cast<int>(b)), b, prof));
    for (const std::string& sp : a.splits) {
      try {
        report(run("split " + sp, 0, prof, split_of(sp)));
      } catch (const longattn::Error& e) {  // a split the planner refuses
        std::printf("split %-6s refused: %s\n", sp.c_str(), e.what());
      }
    }
    for (double b : a.budgets) {
      if (a.pairs == 0) break;
      std::vector<double> wall, cpu;
      double fastest_one = INFINITY, fastest_chunked = INFINITY;
      std::string each;
      for (int i = 0; i < a.pairs; ++i) {
        // Alternate which goes first, so that neither always runs on a
        // machine the other has just warmed.
        const bool single_first = i % 2 == 0;
        const Run first = single_first ? run("single pass", 0, prof) : run("", b, prof);
        const Run second = single_first ? run("", b, prof) : run("single pass", 0, prof);
        const Run& one = single_first ? first : second;
        const Run& chunked = single_first ? second : first;
        wall.push_back(chunked.rep.wall_ms / one.rep.wall_ms - 1);
        cpu.push_back(chunked.cpu_ms / one.cpu_ms - 1);
        fastest_one = std::min(fastest_one, one.rep.wall_ms);
        fastest_chunked = std::min(fastest_chunked, chunked.rep.wall_ms);
        char buf[32];
        std::snprintf(buf, sizeof buf, "%s%+.1f%%", i ? ", " : "", 100 * wall.back());
        each += buf;
      }
      std::printf("%g ms, %d back-to-back pairs: overhead median %+.1f%% wall (%s), %+.1f%% CPU\n",
                  b, a.pairs, 100 * lb::median(wall), each.c_str(), 100 * lb::median(cpu));
      // A shared machine only ever adds time, so the fastest run of each
      // kind is the one least disturbed.
      std::printf(
          "%g ms, fastest of %d each: single pass %.0f ms, budgeted %.0f ms, overhead %+.1f%%\n", b,
          a.pairs, fastest_one, fastest_chunked, 100 * (fastest_chunked / fastest_one - 1));
    }
    std::fflush(stdout);
  }
  std::printf("\nprofile after the runs:");
  for (const auto& [key, g] : prof.gflops) std::printf(" %s=%.1f GFLOP/s", key.c_str(), g);
  std::printf("\n");
  if (!a.save_profile.empty()) prof.save(a.save_profile);
  return 0;
}
