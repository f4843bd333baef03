// bench_cpu: longattn's CPU backend on the fixed case list (bench/cases.hpp),
// single pass (no budget), random inputs rotated over several sets. Prints
// case, median ms and GFLOP/s; --json / --csv write the same rows. Where the
// library runs its AMX kernel, it first measures the machine's AMX bfloat16
// ceiling on the same threads (a plain tile matrix product), and after the
// rows each bfloat16 row as a share of it.
//
//   bench_cpu [--threads N] [--reps N] [--warmup N] [--sets N] [--filter S]
//             [--json PATH] [--csv PATH] [--emit-cases PATH]
#include <omp.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench/bench_util.hpp"
#include "bench/cases.hpp"
#include "bench/cli.hpp"
#include "longattn/longattn.hpp"

#if defined(__x86_64__)
#include <cpuid.h>

#include "src/cpu/amx_tiles.hpp"  // the library's tile instructions (header only)
#endif

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

// ---- the AMX ceiling --------------------------------------------------------

// Why the library does not run its AMX kernel here (empty if it does): a
// tiny bfloat16 call with LONGATTN_CPU_KERNEL=amx, which also has the
// library ask Linux for the tile permission this process needs.
std::string why_no_amx() {
  const char* old = std::getenv("LONGATTN_CPU_KERNEL");
  const std::string saved = old ? old : "";
  setenv("LONGATTN_CPU_KERNEL", "amx", 1);
  std::string why;
  try {
    lb::Buffer q = lb::random_buffer(longattn::DType::bfloat16, 32 * 64, 1);
    lb::Buffer o = lb::random_buffer(longattn::DType::bfloat16, 32 * 64, 2);
    const auto view = [](lb::Buffer& b) {
      return longattn::contiguous(b.data(), longattn::DType::bfloat16, {1, 1, 32, 64});
    };
    longattn::attention(view(q), view(q), view(q), view(o), {});
  } catch (const longattn::Unsupported& e) {
    why = e.what();
  }
  if (old)
    setenv("LONGATTN_CPU_KERNEL", saved.c_str(), 1);
  else
    unsetenv("LONGATTN_CPU_KERNEL");
#if defined(__x86_64__)
  // A build on the scalar tile model (LONGATTN_AMX_EMULATE) accepts AMX on
  // any CPU; the ceiling needs the real instructions.
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (why.empty() && (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || (d & (1u << 24)) == 0))
    why = "this CPU has no AMX-TILE (the library runs a tile model)";
#else
  if (why.empty()) why = "not an x86-64 build";
#endif
  return why;
}

struct Ceiling {
  double gflops = 0;
  std::string what;
};

// GFLOP/s of C[32 x N] = A[32 x K] . B[K x N] (bfloat16 in, float32 out,
// K = 2 KP) on AMX tiles, repeated for ~0.4 s by each of `threads` threads
// on its own operands: blocks of C of 32 x 32 in four tiles, A and B tiles
// loaded per K step of 32, the blocking the attention kernel uses.
Ceiling amx_ceiling([[maybe_unused]] int threads, [[maybe_unused]] int KP, [[maybe_unused]] int N) {
  Ceiling r;
  r.what = "C[32 x " + std::to_string(N) + "] = A[32 x " + std::to_string(2 * KP) + "] . B[" +
           std::to_string(2 * KP) + " x " + std::to_string(N) + "] per thread";
#if defined(__x86_64__)
  // One pass over C: 32 x N x K multiply-adds.
  const double pass_flops = 2.0 * 32 * N * 2 * KP;
  auto run = [&](std::int64_t passes) {
    double seconds = 0;
#pragma omp parallel num_threads(threads)
    {
      // Operands: small bfloat16 values (1 + i/256, both halves of a pair).
      std::vector<std::uint32_t> a(32 * static_cast<std::size_t>(KP) + 16),
          b(static_cast<std::size_t>(KP) * N + 16);
      std::vector<float> c(32 * static_cast<std::size_t>(N) + 16);
      for (std::size_t i = 0; i < a.size(); ++i)
        a[i] = 0x3f803f80u + static_cast<std::uint32_t>(i % 128) * 0x10001u;
      for (std::size_t i = 0; i < b.size(); ++i)
        b[i] = 0x3f803f80u + static_cast<std::uint32_t>(i % 96) * 0x10001u;
      const longattn::cpu::amx::TileScope tiles;
      const std::uint32_t* A = a.data();
      const std::uint32_t* A1 = A + 16 * KP;
      const std::uint32_t* Bm = b.data();
      float* C = c.data();
      float* C1 = C + 16 * N;
      const long sa = 4L * KP, sc = 4L * N;
#pragma omp barrier
      const double t0 = lb::now_ms();
      for (std::int64_t pass = 0; pass < passes; ++pass)
        for (int n = 0; n < N; n += 32)
          longattn::cpu::amx::product_32x32(A, A1, sa, Bm + n, N, KP, C + n, C1 + n, sc);
#pragma omp barrier
#pragma omp master
      seconds = (lb::now_ms() - t0) / 1e3;
    }
    return seconds;
  };
  // Size the run from a short one, then measure.
  const double probe = run(64);
  const auto passes = static_cast<std::int64_t>(std::max(64.0, 64 * 0.4 / std::max(probe, 1e-6)));
  r.gflops = pass_flops * static_cast<double>(passes) * threads / run(passes) / 1e9;
#endif
  return r;
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
  // The AMX ceiling, where the library runs its AMX kernel: operands that
  // stay in L1 (A and B 16 KB each), and a product that streams B from L2.
  std::vector<Ceiling> ceilings;
  if (const std::string why = why_no_amx(); why.empty()) {
    ceilings = {amx_ceiling(threads, 128, 32), amx_ceiling(threads, 256, 512)};
    for (const Ceiling& c : ceilings)
      std::printf("AMX bf16 ceiling, %d threads: %.0f GFLOP/s (%s)\n", threads, c.gflops,
                  c.what.c_str());
  } else {
    std::printf("AMX bf16 ceiling: not measured (%s)\n", why.c_str());
  }
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

  if (!ceilings.empty()) {
    const double peak = std::max(ceilings[0].gflops, ceilings[1].gflops);
    std::printf("bfloat16 rows against the higher AMX ceiling (%.0f GFLOP/s):", peak);
    for (const Row& r : rows)
      if (r.c->dtype == longattn::DType::bfloat16)
        std::printf(" %s %.0f%%", std::string(r.c->name).c_str(), 100 * r.gflops / peak);
    std::printf("\n");
  }

  if (!a.json.empty()) {
    nlohmann::json j;
    j["implementation"] = "longattn";
    j["cpu"] = lb::cpu_model();
    j["threads"] = threads;
    j["reps"] = a.reps;
    j["amx_ceiling_gflops"] = nlohmann::json::array();
    for (const Ceiling& c : ceilings)
      j["amx_ceiling_gflops"].push_back({{"gflops", c.gflops}, {"product", c.what}});
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
