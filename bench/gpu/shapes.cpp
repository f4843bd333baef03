// Issue 12's suites (bfloat16, B = 1, Hq = 32, Hkv = 8), run by
// `bench_gpu --suite shapes` and `bench_gpu --suite budget-shapes`
// (tools/gpu_check.sh shapes runs both, then bench/gpu/shapes_peers.py).
//
// shapes: one longattn call per row, timed as bench_gpu's prefill rows (an
// event pair around the whole call, host sync after it, warm-up, median),
// inputs rotated over up to 4 buffer sets of 256 MB in all. Rows, in this
// order (the peer script follows it, so its time limit cuts the last):
//   mask    16K x 16K, D 128: no mask (full, and causal = true: the two
//           references), an additive ALiBi-like bias and an all-true boolean
//           (dense: nothing hidden; goal >= 70% of the unmasked TFLOP/s),
//           a causal mask given as an array (additive and boolean: compare
//           with causal = true) and block-diagonal documents of 4000 tokens
//           (additive and boolean). Masks are [1, 1, L, L], made on the
//           device by device_fill.cu's formulas.
//   window  128K x 128K, D 128, causal, window_left = 4095 (4096 keys a
//           query); and the same without the window for reference.
//   headdim D = 72 and D = 192 / Dv = 128, 16K x 16K causal.
//   mask    64K x 64K, D 64 (the 26 TFLOP/s case): the mask rows
//           again (not with --quick).
// FLOPs: `flops` is longattn::attention_flops of the shape (causal flag, no
// mask or window): the count the main table uses. `flops_visible` is the
// same count per (query, key) pair times the pairs the row's causal flag,
// window and mask content leave visible: for a structured mask, the work a
// block-skipping kernel has to do. Both go into the CSV with the row's
// definition, which shapes_peers.py reads, so the peers are measured on the
// same rows and counted by the same numbers.
//
// budget-shapes: a fresh device profile (the process's starting one, with
// no rate for the row's key) per run, budgets 5, 20 and 100 ms, on shapes
// whose single pass is long enough to need several submissions: the 64K
// additive and boolean masks (D 64), the 128K window (D 128) and D = 72 at
// 64K causal. Per run: the first submission, the worst after it, the
// submission count and misses, and the call's total against the unbudgeted
// call (timed as the shapes rows); then a second call on the profile the
// first refined.
#include "bench/gpu/shapes.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "bench/bench_util.hpp"
#include "bench/gpu/device_fill.hpp"
#include "bench/gpu/gpu_util.hpp"
#include "longattn/longattn.hpp"

namespace longattn::bench::gpu {
namespace {

constexpr std::int64_t kHq = 32, kHkv = 8;
constexpr std::int64_t kDocLen = 4000;  // not a tile multiple: document edges cut tiles

enum class MaskKind { none, additive, boolean };

const char* mask_name(MaskKind m) {
  return m == MaskKind::additive ? "additive" : m == MaskKind::boolean ? "bool" : "none";
}
const char* content_name(MaskContent c) {
  switch (c) {
    case MaskContent::alibi:
      return "alibi";
    case MaskContent::all:
      return "all";
    case MaskContent::causal:
      return "causal";
    case MaskContent::docs:
      return "docs";
    default:
      return "none";
  }
}

struct Row {
  std::string group;  // "mask", "window", "headdim"
  std::int64_t D = 128, Dv = 128, Lq = 0, Lk = 0;
  bool causal = false;
  std::int64_t window_left = -1, window_right = -1;
  MaskKind mask = MaskKind::none;
  MaskContent content = MaskContent::none;
  std::int64_t doc_len = 0;

  std::string name() const {
    std::string s = group + " d" + std::to_string(D);
    if (Dv != D) s += "/" + std::to_string(Dv);
    s += " q" + std::to_string(Lq) + " k" + std::to_string(Lk) + (causal ? " causal" : " full");
    if (window_left >= 0 || window_right >= 0)
      s += " window " + std::to_string(window_left) + "/" + std::to_string(window_right);
    if (mask != MaskKind::none)
      s += std::string(" ") + mask_name(mask) + " " + content_name(content);
    return s;
  }
  bool same_shape(const Row& o) const { return D == o.D && Dv == o.Dv && Lq == o.Lq && Lk == o.Lk; }
};

std::vector<Row> mask_rows(std::int64_t L, std::int64_t D) {
  const auto M = [&](bool causal, MaskKind m, MaskContent c) {
    Row r{"mask", D, D, L, L, causal};
    r.mask = m;
    r.content = c;
    r.doc_len = c == MaskContent::docs ? kDocLen : 0;
    return r;
  };
  return {M(false, MaskKind::none, MaskContent::none),
          M(true, MaskKind::none, MaskContent::none),
          M(false, MaskKind::additive, MaskContent::alibi),
          M(false, MaskKind::boolean, MaskContent::all),
          M(false, MaskKind::additive, MaskContent::causal),
          M(false, MaskKind::boolean, MaskContent::causal),
          M(false, MaskKind::additive, MaskContent::docs),
          M(false, MaskKind::boolean, MaskContent::docs)};
}

Row window_row(std::int64_t L, std::int64_t left) {
  Row r{"window", 128, 128, L, L, true};
  r.window_left = left;
  return r;
}

std::vector<Row> shape_rows(bool quick) {
  std::vector<Row> rows = mask_rows(16384, 128);
  rows.push_back(window_row(131072, 4095));
  rows.push_back(window_row(131072, -1));  // reference: causal over every key
  rows.push_back({"headdim", 72, 72, 16384, 16384, true});
  rows.push_back({"headdim", 192, 128, 16384, 16384, true});
  if (!quick)
    for (const Row& r : mask_rows(65536, 64)) rows.push_back(r);
  return rows;
}

// (query, key) pairs the row leaves visible: per query an interval of keys
// from the causal flag, the window and the mask content (library semantics:
// bottom-right diagonal, causal wins over window_right).
double visible_pairs(const Row& r) {
  double pairs = 0;
  for (std::int64_t i = 0; i < r.Lq; ++i) {
    const std::int64_t diag = i + r.Lk - r.Lq;
    std::int64_t lo = 0, hi = r.Lk;
    if (r.causal || r.content == MaskContent::causal) hi = std::min(hi, diag + 1);
    if (!r.causal && r.window_right >= 0) hi = std::min(hi, diag + r.window_right + 1);
    if (r.window_left >= 0) lo = std::max(lo, diag - r.window_left);
    if (r.content == MaskContent::docs) {
      const std::int64_t d0 = diag / r.doc_len * r.doc_len;
      lo = std::max(lo, d0);
      hi = std::min(hi, d0 + r.doc_len);
    }
    if (hi > lo) pairs += static_cast<double>(hi - lo);
  }
  return pairs;
}

double flops_per_pair(const Row& r) {
  return longattn::attention_flops(1, kHq, 1, 1, r.D, r.Dv, false);
}

// Inputs of one shape (rotated sets) and its masks, kept while rows of the
// same shape follow each other.
struct Workspace {
  Row shape;
  int sets = 0;
  std::vector<DeviceBuffer> q, k, v, o;
  DeviceBuffer additive, boolean;  // allocated on first use
  bool have_shape = false;

  void prepare(const Row& r) {
    if (have_shape && shape.same_shape(r)) return;
    *this = Workspace{};
    shape = r;
    have_shape = true;
    const std::size_t qn = kHq * r.Lq * r.D, kn = kHkv * r.Lk * r.D, vn = kHkv * r.Lk * r.Dv,
                      on = kHq * r.Lq * r.Dv;
    const double set_bytes = 2.0 * static_cast<double>(qn + kn + vn + on);
    sets = std::clamp(static_cast<int>(std::ceil(256e6 / set_bytes)), 1, 4);
    for (int s = 0; s < sets; ++s) {
      q.emplace_back(2 * qn);
      k.emplace_back(2 * kn);
      v.emplace_back(2 * vn);
      o.emplace_back(2 * on);
      const std::uint64_t seed = 101 + 17 * static_cast<std::uint64_t>(s);
      check(fill_uniform_bf16(q.back().get(), qn, seed), "fill q");
      check(fill_uniform_bf16(k.back().get(), kn, seed + 1), "fill k");
      check(fill_uniform_bf16(v.back().get(), vn, seed + 2), "fill v");
    }
    check(cudaDeviceSynchronize(), "fill inputs");
  }

  // The row's mask on the device (nullptr for none), made by its formula.
  const void* mask(const Row& r) {
    if (r.mask == MaskKind::none) return nullptr;
    DeviceBuffer& b = r.mask == MaskKind::boolean ? boolean : additive;
    const std::size_t n = static_cast<std::size_t>(r.Lq * r.Lk);
    if (!b.get()) b = DeviceBuffer(r.mask == MaskKind::boolean ? n : 2 * n);
    check(fill_mask(b.get(), {r.content, r.mask == MaskKind::boolean, r.Lq, r.Lk, r.doc_len}),
          "fill mask");
    check(cudaDeviceSynchronize(), "fill mask");
    return b.get();
  }
};

struct CallSpec {
  const void* mask = nullptr;
  double budget_ms = 0;  // 0: one single-pass dispatch
  longattn::DeviceProfile* profile = nullptr;
};

void call(const Row& r, Workspace& w, int s, const CallSpec& c, longattn::RunReport* rep) {
  const auto bf = longattn::DType::bfloat16;
  const auto dev = longattn::Device::cuda;
  const auto q = longattn::contiguous(w.q[s].get(), bf, {1, kHq, r.Lq, r.D}, dev);
  const auto k = longattn::contiguous(w.k[s].get(), bf, {1, kHkv, r.Lk, r.D}, dev);
  const auto v = longattn::contiguous(w.v[s].get(), bf, {1, kHkv, r.Lk, r.Dv}, dev);
  const auto o = longattn::contiguous(w.o[s].get(), bf, {1, kHq, r.Lq, r.Dv}, dev);
  longattn::AttentionOptions opt;
  opt.causal = r.causal;
  opt.window_left = r.window_left;
  opt.window_right = r.window_right;
  if (c.mask)
    opt.mask = longattn::contiguous(const_cast<void*>(c.mask),
                                    r.mask == MaskKind::boolean ? longattn::DType::boolean : bf,
                                    {1, 1, r.Lq, r.Lk}, dev);
  opt.backend = longattn::BackendKind::cuda;
  opt.report = rep;
  opt.profile = c.profile;
  opt.policy.budget_ms = c.budget_ms;
  if (c.budget_ms <= 0) opt.policy.chunk_threshold_keys = 0;
  longattn::attention(q, k, v, o, opt);
}

// The kernels a run used, each once, joined by '+'.
std::string kernels(const longattn::RunReport& rep) {
  std::vector<std::string> names;
  for (const auto& s : rep.submissions)
    for (const auto& k : s.kernels)
      if (std::find(names.begin(), names.end(), k) == names.end()) names.push_back(k);
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : "+") + n;
  return out.empty() ? "-" : out;
}

// An error message fit for one CSV field and one table cell.
std::string one_field(std::string s) {
  for (char& ch : s)
    if (ch == ',' || ch == '\n' || ch == '|' || ch == '"') ch = ch == ',' ? ';' : ' ';
  return s.size() > 160 ? s.substr(0, 160) : s;
}

struct Timed {
  double ms = 0;
  longattn::RunReport report;  // of the last timed call
};

// bench_gpu's prefill method: a warm-up call (also the estimate), then
// about a second of calls, 3 to 30, median.
Timed time_row(const Row& r, Workspace& w, const CallSpec& c) {
  const double est = synced_ms([&] { call(r, w, 0, c, nullptr); });
  const int reps = std::clamp(static_cast<int>(1000.0 / std::max(est, 0.01)), 3, 30);
  std::vector<double> times;
  Timed t;
  for (int i = 0; i < reps; ++i) {
    longattn::RunReport rep;
    times.push_back(synced_ms([&] { call(r, w, i % w.sets, c, &rep); }));
    if (i == reps - 1) t.report = std::move(rep);
  }
  t.ms = median(std::move(times));
  return t;
}

void print_device() {
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  std::printf("device: %s, %d SMs, %.0f GiB\n", prop.name, prop.multiProcessorCount,
              static_cast<double>(prop.totalGlobalMem) / (1 << 30));
}

bool selected(const SuiteArgs& a, const Row& r) {
  return a.filter.empty() || r.name().find(a.filter) != std::string::npos;
}

}  // namespace

int run_shapes_suite(const SuiteArgs& a) {
  print_device();
  std::ofstream csv;
  if (!a.csv_path.empty()) {
    csv.open(a.csv_path);
    csv << "group,name,D,Dv,Lq,Lk,causal,window_left,window_right,mask,content,doc_len,pairs,"
           "flops,flops_visible,ms,tflops,tflops_visible,kernels,submissions,status\n";
  }
  std::printf("%-52s %9s %9s %9s  %-26s %s\n", "row", "ms", "TFLOP/s", "visible", "vs reference",
              "kernels");
  // Unmasked references by shape: causal = false and causal = true.
  std::map<std::string, double> full_ms, causal_ms;
  Workspace w;
  for (const Row& r : shape_rows(a.quick)) {
    if (!selected(a, r)) continue;
    const std::string name = r.name();
    const std::string shape_key = std::to_string(r.D) + "/" + std::to_string(r.Dv) + "/" +
                                  std::to_string(r.Lq) + "/" + std::to_string(r.Lk);
    const double pairs = visible_pairs(r);
    const double flops = longattn::attention_flops(1, kHq, r.Lq, r.Lk, r.D, r.Dv, r.causal);
    const double flops_visible = pairs * flops_per_pair(r);
    Timed t;
    std::string status = "ok";
    try {
      w.prepare(r);
      t = time_row(r, w, {w.mask(r)});
    } catch (const std::exception& e) {
      status = "error: " + one_field(e.what());
      (void)cudaGetLastError();
    }
    const bool ok = status == "ok";
    const double tflops = ok ? flops / t.ms * 1e-9 : 0;
    const double tflops_vis = ok ? flops_visible / t.ms * 1e-9 : 0;
    std::string ref = "";
    char buf[64];
    if (ok && r.mask == MaskKind::none && r.window_left < 0 && r.group == "mask")
      (r.causal ? causal_ms : full_ms)[shape_key] = t.ms;
    if (ok && (r.content == MaskContent::alibi || r.content == MaskContent::all) &&
        full_ms.count(shape_key)) {
      std::snprintf(buf, sizeof buf, "%.2f x unmasked TFLOP/s", full_ms[shape_key] / t.ms);
      ref = buf;
    } else if (ok && r.content == MaskContent::causal && causal_ms.count(shape_key)) {
      std::snprintf(buf, sizeof buf, "%.2f x causal=true speed", causal_ms[shape_key] / t.ms);
      ref = buf;
    }
    if (ok) {
      std::printf("%-52s %9.3f %9.1f %9.1f  %-26s %s\n", name.c_str(), t.ms, tflops, tflops_vis,
                  ref.c_str(), kernels(t.report).c_str());
    } else {
      std::printf("%-52s %s\n", name.c_str(), status.c_str());
    }
    std::fflush(stdout);
    if (csv.is_open()) {
      csv << r.group << ',' << name << ',' << r.D << ',' << r.Dv << ',' << r.Lq << ',' << r.Lk
          << ',' << (r.causal ? 1 : 0) << ',' << r.window_left << ',' << r.window_right << ','
          << mask_name(r.mask) << ',' << content_name(r.content) << ',' << r.doc_len << ','
          << static_cast<long long>(pairs) << ',' << flops << ',' << flops_visible << ','
          << (ok ? t.ms : 0) << ',' << tflops << ',' << tflops_vis << ','
          << (ok ? kernels(t.report) : "-") << ',' << t.report.submissions.size() << ',' << status
          << '\n';
      csv.flush();
    }
  }
  return 0;
}

int run_budget_shapes_suite(const SuiteArgs& a) {
  // Taken before any call of this process, so nothing has refined it.
  const longattn::DeviceProfile initial = longattn::default_profile(longattn::BackendKind::cuda);
  print_device();
  const std::int64_t L = a.quick ? 16384 : 65536;
  Row add{"mask", 64, 64, L, L, false};
  add.mask = MaskKind::additive;
  add.content = MaskContent::alibi;
  Row boo = add;
  boo.mask = MaskKind::boolean;
  boo.content = MaskContent::all;
  const std::vector<Row> rows{
      add, boo, window_row(a.quick ? 32768 : 131072, 4095), {"headdim", 72, 72, L, L, true}};
  const double budgets[] = {5, 20, 100};

  std::ofstream csv;
  if (!a.csv_path.empty()) {
    csv.open(a.csv_path);
    csv << "name,flops_visible,budget_ms,single_ms,first_ms,first_predicted_ms,"
           "worst_after_first_ms,submissions,misses,misses_over_1.1,total_ms,overhead_pct,"
           "replans,second_first_ms,second_worst_after_first_ms,second_submissions,"
           "second_misses,second_total_ms,kernels,status\n";
  }
  std::printf("\nbudget table: a fresh device profile per budgeted run (no rate for the key)\n");
  std::printf("%-52s %6s %9s %9s %9s %5s %9s %9s %8s  %s\n", "row", "budget", "first", "predicted",
              "worst>1st", "subs", "miss/1.1x", "total", "overhead",
              "2nd call: subs, worst, misses");
  Workspace w;
  for (const Row& r : rows) {
    if (!selected(a, r)) continue;
    const std::string name = r.name();
    const double flops_visible = visible_pairs(r) * flops_per_pair(r);
    try {
      w.prepare(r);
      const void* mask = w.mask(r);
      longattn::DeviceProfile scratch = initial;  // the unbudgeted calls refine only this
      const Timed single = time_row(r, w, {mask, 0, &scratch});
      std::printf("%-52s  unbudgeted %.2f ms (%.1f TFLOP/s over visible pairs, %s)\n", name.c_str(),
                  single.ms, flops_visible / single.ms * 1e-9, kernels(single.report).c_str());
      for (double b : budgets) {
        longattn::DeviceProfile fresh = initial;
        fresh.gflops.erase(longattn::DeviceProfile::rate_key(longattn::DType::bfloat16, r.D,
                                                             r.causal, r.mask != MaskKind::none));
        struct Stats {
          double total = 0, first = 0, first_predicted = 0, worst = 0;
          std::size_t subs = 0;
          int misses = 0, misses_11 = 0, replans = 0;
          std::string kernels;
        };
        // One call on `fresh`, which it refines: the first call plans from
        // the guess, the second from what the first measured.
        auto run = [&](int set) {
          longattn::RunReport rep;
          Stats s;
          s.total = synced_ms([&] { call(r, w, set, {mask, b, &fresh}, &rep); });
          s.subs = rep.submissions.size();
          for (std::size_t i = 0; i < s.subs; ++i) {
            const double ms = rep.submissions[i].measured_ms;
            if (i == 0) {
              s.first = ms;
              s.first_predicted = rep.submissions[i].predicted_ms;
            } else {
              s.worst = std::max(s.worst, ms);
            }
            s.misses += ms > b;
            s.misses_11 += ms > 1.1 * b;
          }
          s.replans = rep.replans;
          s.kernels = kernels(rep);
          return s;
        };
        const Stats one = run(0);
        const Stats two = run(1 % w.sets);
        const double overhead = (one.total / single.ms - 1) * 100;
        std::printf(
            "%-52s %6.0f %9.2f %9.2f %9.2f %5zu %4d/%-4d %9.2f %+7.1f%%  %zu, %.2f ms, %d\n",
            name.c_str(), b, one.first, one.first_predicted, one.worst, one.subs, one.misses,
            one.misses_11, one.total, overhead, two.subs, two.worst, two.misses);
        std::fflush(stdout);
        if (csv.is_open()) {
          csv << name << ',' << flops_visible << ',' << b << ',' << single.ms << ',' << one.first
              << ',' << one.first_predicted << ',' << one.worst << ',' << one.subs << ','
              << one.misses << ',' << one.misses_11 << ',' << one.total << ',' << overhead << ','
              << one.replans << ',' << two.first << ',' << two.worst << ',' << two.subs << ','
              << two.misses << ',' << two.total << ',' << one.kernels << ",ok\n";
          csv.flush();
        }
      }
    } catch (const std::exception& e) {
      const std::string status = "error: " + one_field(e.what());
      (void)cudaGetLastError();
      std::printf("%-52s %s\n", name.c_str(), status.c_str());
      // The row's name and why; every number empty.
      if (csv.is_open())
        csv << name << ',' << flops_visible << std::string(18, ',') << status << '\n';
    }
  }
  return 0;
}

}  // namespace longattn::bench::gpu
