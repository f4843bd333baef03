// RunReport -> JSON. Field names follow the C++ structs (plan.hpp), so the
// file reads like the API documentation.
#include "report.hpp"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>

#include "atomic_file.hpp"

namespace longattn::cli {
namespace {

// JSON has no infinity or NaN; write null rather than an invalid number.
nlohmann::json num(double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(); }

}  // namespace

nlohmann::json plan_json(const Plan& plan) {
  nlohmann::json subs = nlohmann::json::array();
  for (const auto& s : plan.submissions) {
    nlohmann::json ds = nlohmann::json::array();
    for (const auto& d : s.dispatches)
      ds.push_back({{"q0", d.rect.q0},
                    {"q1", d.rect.q1},
                    {"k0", d.rect.k0},
                    {"k1", d.rect.k1},
                    {"mode", mode_name(d.mode)},
                    {"flops", num(d.flops)},
                    {"predicted_ms", num(d.predicted_ms)}});
    subs.push_back({{"predicted_ms", num(s.predicted_ms)},
                    {"kv_head", s.kv_head},
                    {"dispatches", std::move(ds)}});
  }
  return {{"chunked", plan.chunked},
          {"by_kv_head", plan.by_kv_head},
          {"reason", plan.reason},
          {"query_rows", plan.query_rows},
          {"chunk_keys", plan.chunk_keys},
          {"workspace_bytes", plan.workspace_bytes},
          {"total_flops", num(plan.total_flops)},
          {"predicted_ms", num(plan.predicted_ms)},
          {"num_submissions", plan.submissions.size()},
          {"num_dispatches", plan.num_dispatches()},
          {"warnings", plan.warnings},
          {"submissions", std::move(subs)}};
}

nlohmann::json run_report_json(const RunReport& r) {
  nlohmann::json subs = nlohmann::json::array();
  for (const auto& s : r.submissions)
    subs.push_back({{"dispatches", s.dispatches},
                    {"kernels", s.kernels},
                    {"flops", num(s.flops)},
                    {"predicted_ms", num(s.predicted_ms)},
                    {"measured_ms", num(s.measured_ms)},
                    {"over_budget", s.over_budget}});
  nlohmann::json finished = nlohmann::json::array();
  for (const auto& [q0, q1] : r.finished_rows) finished.push_back({q0, q1});
  return {{"backend", r.backend},
          {"completed", r.completed},
          {"budget_ms", num(r.budget_ms)},
          {"budget_misses", r.budget_misses},
          {"replans", r.replans},
          {"total_flops", num(r.total_flops)},
          {"total_ms", num(r.total_ms)},
          {"wall_ms", num(r.wall_ms)},
          {"gflops_per_s", num(r.total_ms > 0 ? r.total_flops / r.total_ms * 1e-6 : 0.0)},
          {"finished_rows", std::move(finished)},
          {"warnings", r.warnings},
          {"submissions", std::move(subs)},
          {"plan", plan_json(r.plan)}};
}

void write_text(const std::string& path, const std::string& text) {
  write_atomically(path, [&](const std::string& tmp) {
    std::ofstream f(tmp, std::ios::trunc);
    // errno still holds the failing call's reason (EFBIG, ENOSPC, EACCES).
    if (!f)
      throw IoError("[longattn] " + path + ": cannot open for writing: " + std::strerror(errno));
    f << text;
    f.close();
    if (!f) throw IoError("[longattn] " + path + ": write failed: " + std::strerror(errno));
  });
}

void write_json(const std::string& path, const nlohmann::json& j) {
  write_text(path, j.dump(2) + "\n");
}

}  // namespace longattn::cli
