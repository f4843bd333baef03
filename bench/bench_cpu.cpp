// bench_cpu: longattn's CPU backend on the fixed case list (bench/cases.hpp),
// single pass (no budget), random inputs rotated over several sets. Prints
// case, median ms and GFLOP/s; --json / --csv write the same rows.
//
//   bench_cpu [--threads N] [--reps N] [--warmup N] [--sets N] [--filter S]
//             [--json PATH] [--csv PATH] [--emit-cases PATH]
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench/bench_util.hpp"
#include "bench/cases.hpp"
#include "bench/cli.hpp"
#include "longattn/longattn.hpp"

namespace lb = longattn::bench;

namespace {

struct Args {
  int threads = 0;  // 0 = all hardware threads
  int reps = 5;
  int warmup = 1;
  int sets = 3;
  std::string filter, json, csv, emit_cases;
};

Args parse(int argc, char** argv) {
  Args a;
  CLI::App app{"bench_cpu: time longattn's CPU backend on bench/cases.hpp"};
  app.add_option("--threads", a.threads, "CPU threads (0 = all hardware threads)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--reps", a.reps, "timed runs per case (median reported)")
      ->check(CLI::Range(1, 1000000));
  app.add_option("--warmup", a.warmup, "untimed runs per case first")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--sets", a.sets, "input sets rotated over the runs")->check(CLI::Range(1, 64));
  app.add_option("--filter", a.filter, "only cases whose name contains this");
  app.add_option("--json", a.json, "write the rows as JSON here");
  app.add_option("--csv", a.csv, "write the rows as CSV here");
  app.add_option("--emit-cases", a.emit_cases, "write the case list as JSON here and exit");
  lb::parse_or_exit(app, argc, argv);
  return a;
}

nlohmann::json case_json(const lb::Case& c) {
  return {{"name", std::string(c.name)},
          {"B", c.B},
          {"Hq", c.Hq},
          {"Hkv", c.Hkv},
          {"Lq", c.Lq},
          {"Lk", c.Lk},
          {"D", c.D},
          {"causal", c.causal},
          {"dtype", longattn::dtype_name(c.dtype)},
          {"flops", lb::attention_flops(c)}};
}

struct Row {
  const lb::Case* c;
  double median_ms, min_ms, gflops, checksum;
  double cpu_ms;  // median process CPU time per call (all threads)
  std::vector<double> times, cpu_times;
  std::string kernel;  // the kernel path the run report names (cpu.avx512, ...)
};

Row run_case(const lb::Case& c, const Args& a, int threads) {
  using longattn::TensorView;
  struct Set {
    lb::Buffer q, k, v;
  };
  std::vector<Set> sets;
  for (int s = 0; s < a.sets; ++s) {
    const auto seed = static_cast<std::uint64_t>(1000 * s);
    sets.push_back({lb::random_buffer(c.dtype, c.B * c.Hq * c.Lq * c.D, seed + 1),
                    lb::random_buffer(c.dtype, c.B * c.Hkv * c.Lk * c.D, seed + 2),
                    lb::random_buffer(c.dtype, c.B * c.Hkv * c.Lk * c.D, seed + 3)});
  }
  lb::Buffer out = lb::random_buffer(c.dtype, c.B * c.Hq * c.Lq * c.D, 999);  // overwritten

  longattn::AttentionOptions opt;
  opt.causal = c.causal;
  opt.threads = threads;
  opt.policy.budget_ms = 0;  // no budget: one single-pass dispatch
  longattn::RunReport rep;
  opt.report = &rep;

  auto call = [&](int s) {
    Set& in = sets[static_cast<std::size_t>(s)];
    const TensorView q = longattn::contiguous(in.q.data(), c.dtype, {c.B, c.Hq, c.Lq, c.D});
    const TensorView k = longattn::contiguous(in.k.data(), c.dtype, {c.B, c.Hkv, c.Lk, c.D});
    const TensorView v = longattn::contiguous(in.v.data(), c.dtype, {c.B, c.Hkv, c.Lk, c.D});
    const TensorView o = longattn::contiguous(out.data(), c.dtype, {c.B, c.Hq, c.Lq, c.D});
    const double c0 = lb::cpu_ms(), t0 = lb::now_ms();
    longattn::attention(q, k, v, o, opt);
    const double t = lb::now_ms() - t0;
    return std::pair{t, lb::cpu_ms() - c0};
  };

  Row row{&c, 0, 0, 0, 0, 0, {}, {}, {}};
  for (int w = 0; w < std::max(1, a.warmup); ++w) {
    call(0);
    if (w == 0) row.checksum = lb::checksum(out);  // output on input set 0
  }
  if (rep.plan.chunked)
    std::fprintf(stderr, "warning: %s ran chunked (%s)\n", std::string(c.name).c_str(),
                 rep.plan.reason.c_str());
  for (int r = 0; r < a.reps; ++r) {
    const auto [t, cpu] = call(r % a.sets);
    row.times.push_back(t);
    row.cpu_times.push_back(cpu);
  }
  for (const auto& s : rep.submissions)
    for (const auto& k : s.kernels)
      if (row.kernel.find(k) == std::string::npos)
        row.kernel += (row.kernel.empty() ? "" : "+") + k;
  row.cpu_ms = lb::median(row.cpu_times);
  row.median_ms = lb::median(row.times);
  row.min_ms = *std::min_element(row.times.begin(), row.times.end());
  row.gflops = lb::attention_flops(c) / (row.median_ms * 1e6);
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  const int threads = lb::hardware_threads(a.threads);

  if (!a.emit_cases.empty()) {
    nlohmann::json cases = nlohmann::json::array();
    for (const lb::Case& c : lb::kCpuCases) cases.push_back(case_json(c));
    std::ofstream(a.emit_cases) << cases.dump(1) << "\n";
    return 0;
  }

  std::printf(
      "longattn CPU backend, %s, %d threads, single pass (budget none), median of %d (+%d warmup), "
      "%d input sets\n",
      lb::cpu_model().c_str(), threads, a.reps, a.warmup, a.sets);
  std::printf("%-22s %-9s %-7s %-28s %10s %10s %9s %10s %12s  %s\n", "case", "dtype", "mask",
              "B,Hq,Hkv,Lq,Lk,D", "ms(median)", "ms(min)", "GFLOP/s", "cpu-ms", "GFLOP/cpu-s",
              "kernel");
  std::vector<Row> rows;
  for (const lb::Case& c : lb::kCpuCases) {
    if (!a.filter.empty() && std::string(c.name).find(a.filter) == std::string::npos) continue;
    Row r = run_case(c, a, threads);
    const std::string shape = std::to_string(c.B) + "," + std::to_string(c.Hq) + "," +
                              std::to_string(c.Hkv) + "," + std::to_string(c.Lq) + "," +
                              std::to_string(c.Lk) + "," + std::to_string(c.D);
    std::printf("%-22s %-9s %-7s %-28s %10.1f %10.1f %9.1f %10.1f %12.1f  %s\n",
                std::string(c.name).c_str(), longattn::dtype_name(c.dtype),
                c.causal ? "causal" : "none", shape.c_str(), r.median_ms, r.min_ms, r.gflops,
                r.cpu_ms, lb::attention_flops(c) / (r.cpu_ms * 1e6), r.kernel.c_str());
    std::fflush(stdout);
    rows.push_back(std::move(r));
  }

  if (!a.json.empty()) {
    nlohmann::json j;
    j["implementation"] = "longattn";
    j["cpu"] = lb::cpu_model();
    j["threads"] = threads;
    j["reps"] = a.reps;
    j["results"] = nlohmann::json::array();
    for (const Row& r : rows) {
      nlohmann::json e = case_json(*r.c);
      e["median_ms"] = r.median_ms;
      e["min_ms"] = r.min_ms;
      e["gflops"] = r.gflops;
      e["checksum"] = r.checksum;
      e["times_ms"] = r.times;
      e["cpu_ms"] = r.cpu_ms;
      e["cpu_times_ms"] = r.cpu_times;
      e["kernel"] = r.kernel;
      j["results"].push_back(e);
    }
    std::ofstream(a.json) << j.dump(1) << "\n";
  }
  if (!a.csv.empty()) {
    std::ofstream f(a.csv);
    f << "impl,case,dtype,causal,B,Hq,Hkv,Lq,Lk,D,threads,median_ms,min_ms,gflops\n";
    for (const Row& r : rows)
      f << "longattn," << r.c->name << "," << longattn::dtype_name(r.c->dtype) << "," << r.c->causal
        << "," << r.c->B << "," << r.c->Hq << "," << r.c->Hkv << "," << r.c->Lq << "," << r.c->Lk
        << "," << r.c->D << "," << threads << "," << r.median_ms << "," << r.min_ms << ","
        << r.gflops << "\n";
  }
  return 0;
}
