#include "summary.hpp"

#include <fmt/format.h>
#include <fmt/ostream.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <numeric>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "messages.hpp"

namespace longattn::cli {
namespace {

constexpr std::size_t kTableRows = 16;
constexpr std::size_t kWorstShown = 5;

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

std::string budget_cell(double ms, double budget) {
  if (budget <= 0) return "";
  return fmt::format("{:5.0f}%{}", 100 * ms / budget, ms > budget ? "  OVER" : "");
}

void submission_row(std::ostream& out, std::size_t i, const SubmissionReport& s, double budget) {
  fmt::print(out, "  {:>5} {:>5} {:>9.3f} {:>10.2f} {:>10.2f}  {}\n", i, s.dispatches,
             s.flops * 1e-9, s.predicted_ms, s.measured_ms, budget_cell(s.measured_ms, budget));
}

void table_header(std::ostream& out, double budget) {
  fmt::print(out, "  {:>5} {:>5} {:>9} {:>10} {:>10}  {}\n", "#", "disp", "GFLOP", "pred ms",
             "meas ms", budget > 0 ? "of budget" : "");
}

}  // namespace

std::string format_bytes(double b) {
  if (b >= 1024.0 * 1024 * 1024 * 1024)
    return fmt::format("{:.2f} TiB", b / (1024.0 * 1024 * 1024 * 1024));
  if (b >= 1024.0 * 1024 * 1024) return fmt::format("{:.2f} GiB", b / (1024.0 * 1024 * 1024));
  if (b >= 1024.0 * 1024) return fmt::format("{:.1f} MiB", b / (1024.0 * 1024));
  if (b >= 1024.0) return fmt::format("{:.1f} KiB", b / 1024.0);
  return fmt::format("{:.0f} B", b);
}

namespace {

struct Rect {
  std::int64_t rows, keys;
  double area() const { return static_cast<double>(rows) * static_cast<double>(keys); }
};

std::string rect_str(const Rect& r) { return fmt::format("{} x {}", r.rows, r.keys); }

}  // namespace

// What the plan does, from its dispatches: Plan::chunk_keys is only the
// nominal chunk, and causal plans cut most rectangles narrower than it
// (a 1M-token causal plan of "73152-key chunks" dispatches mostly 24384).
void print_plan(std::ostream& out, const Plan& plan, const Policy& policy, bool dispatches) {
  std::vector<Rect> rects;
  double max_sub = 0;
  for (const auto& s : plan.submissions) {
    max_sub = std::max(max_sub, s.predicted_ms);
    for (const auto& d : s.dispatches)
      rects.push_back({d.rect.q1 - d.rect.q0, d.rect.k1 - d.rect.k0});
  }
  // The library's reason usually names the route already ("chunked: ...").
  const std::string route = plan.chunked ? "chunked" : "single pass";
  if (plan.reason.rfind(route, 0) == 0)
    fmt::print(out, "plan: {}\n", plan.reason);
  else
    fmt::print(out, "plan: {}{}\n", route, plan.reason.empty() ? "" : " (" + plan.reason + ")");
  fmt::print(out, "  {} submission{}, {} dispatch{}, workspace {}, {:.2f} GFLOP\n",
             plan.submissions.size(), plan.submissions.size() == 1 ? "" : "s",
             plan.num_dispatches(), plan.num_dispatches() == 1 ? "" : "es",
             format_bytes(static_cast<double>(plan.workspace_bytes)), plan.total_flops * 1e-9);
  if (plan.by_kv_head && !plan.submissions.empty())
    fmt::print(out,
               "  one pass per KV head, {} passes in order: a dispatch covers its KV head's "
               "query heads\n",
               plan.submissions.back().kv_head - plan.submissions.front().kv_head + 1);
  if (!rects.empty()) {
    std::stable_sort(rects.begin(), rects.end(),
                     [](const Rect& a, const Rect& b) { return a.area() < b.area(); });
    const Rect &lo = rects.front(), &mid = rects[(rects.size() - 1) / 2], &hi = rects.back();
    if (lo.rows == hi.rows && lo.keys == hi.keys)
      fmt::print(out, "  {} dispatch: {} query rows x {} keys\n",
                 rects.size() == 1 ? "the" : "every", lo.rows, lo.keys);
    else
      fmt::print(out, "  dispatch rectangles, query rows x keys: min {}, median {}, max {}\n",
                 rect_str(lo), rect_str(mid), rect_str(hi));
  }
  fmt::print(out, "  predicted {:.1f} ms in total, {:.1f} ms for the longest submission",
             plan.predicted_ms, max_sub);
  if (policy.budget_ms > 0)
    fmt::print(out, " (target {:.1f} ms = budget {:g} ms x safety {:g})",
               policy.budget_ms * policy.safety, policy.budget_ms, policy.safety);
  else
    fmt::print(out, " (no budget)");
  out << "\n";
  if (!dispatches) return;
  for (std::size_t i = 0; i < plan.submissions.size(); ++i) {
    const auto& s = plan.submissions[i];
    fmt::print(out, "  submission {}{}: predicted {:.2f} ms\n", i,
               s.kv_head >= 0 ? fmt::format(" (KV head {})", s.kv_head) : "", s.predicted_ms);
    for (const auto& d : s.dispatches)
      fmt::print(out, "    q [{}, {}) x k [{}, {}) {:<10} {:>9.3f} GFLOP {:>8.2f} ms\n", d.rect.q0,
                 d.rect.q1, d.rect.k0, d.rect.k1, mode_name(d.mode), d.flops * 1e-9,
                 d.predicted_ms);
  }
}

void print_warnings(std::ostream& err, const std::vector<std::string>& warnings,
                    std::set<std::string>& said) {
  for (const auto& w : warnings)
    if (said.insert(w).second)
      fmt::print(err, "longattn: warning: {}\n", in_flag_terms(w, FieldNames::policy));
}

void print_submissions(std::ostream& out, const RunReport& r, bool all) {
  const auto& subs = r.submissions;
  if (subs.empty()) return;
  // Which kernels ran (each once), so a run shows its path.
  std::vector<std::string> kernels;
  for (const auto& s : subs)
    for (const auto& k : s.kernels)
      if (std::find(kernels.begin(), kernels.end(), k) == kernels.end()) kernels.push_back(k);
  if (!kernels.empty()) fmt::print(out, "  kernels: {}\n", fmt::join(kernels, ", "));
  const double budget = r.budget_ms;
  if (all || subs.size() <= kTableRows) {
    table_header(out, budget);
    for (std::size_t i = 0; i < subs.size(); ++i) submission_row(out, i, subs[i], budget);
    return;
  }
  std::vector<double> meas, pred, ratio;
  for (const auto& s : subs) {
    meas.push_back(s.measured_ms);
    pred.push_back(s.predicted_ms);
    if (s.predicted_ms > 0) ratio.push_back(s.measured_ms / s.predicted_ms);
  }
  fmt::print(out, "  {:<22} {:>9} {:>9} {:>9} {:>9}\n", "", "min", "median", "p90", "max");
  auto dist = [&](const char* name, const std::vector<double>& v, const char* unit) {
    fmt::print(out, "  {:<22} {:>9.2f} {:>9.2f} {:>9.2f} {:>9.2f}  {}\n", name, percentile(v, 0),
               percentile(v, 0.5), percentile(v, 0.9), percentile(v, 1), unit);
  };
  dist("measured", meas, "ms");
  dist("predicted", pred, "ms");
  if (!ratio.empty()) dist("measured / predicted", ratio, "");

  std::vector<std::size_t> order(subs.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](auto a, auto b) { return subs[a].measured_ms > subs[b].measured_ms; });
  fmt::print(out, "  slowest {} (--all-submissions lists every one):\n", kWorstShown);
  table_header(out, budget);
  for (std::size_t n = 0; n < kWorstShown; ++n)
    submission_row(out, order[n], subs[order[n]], budget);
}

}  // namespace longattn::cli
