// Plans, policies, device profiles and run reports: the vocabulary of the
// chunked path (see the planner's header comment in src/core/planner.cpp for
// a worked example).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "longattn/error.hpp"
#include "longattn/tensor.hpp"

namespace longattn {

// What a dispatch does with the float32 running state (m, l, o) of its query
// rows. A query group's first dispatch initializes the state, later ones
// accumulate into it in place, the last one finalizes it into O and LSE.
// single_pass = init + finalize in one dispatch (no workspace).
enum class Mode : std::uint8_t { single_pass, init, accumulate, finalize };
const char* mode_name(Mode m);

// The work of the rectangle [q0, q1) x [k0, k1) for every (batch, head).
struct Rect {
  std::int64_t q0 = 0, q1 = 0;  // query rows
  std::int64_t k0 = 0, k1 = 0;  // key columns
};

struct Dispatch {
  Rect rect;
  Mode mode = Mode::single_pass;
  double flops = 0;         // 2 * B * Hq * (D + Dv) * visible pairs (Problem::flops)
  double predicted_ms = 0;  // planner's prediction for this dispatch alone
};

// Dispatches committed together. The budget bounds a submission's time.
struct Submission {
  std::vector<Dispatch> dispatches;
  double predicted_ms = 0;
  // -1: the dispatches cover every head. Else the plan runs KV head by KV
  // head (Plan::by_kv_head) and they cover this KV head and its query heads.
  std::int64_t kv_head = -1;
};

// How to split the work.
struct Policy {
  double budget_ms = 0;  // per-submission time budget; 0 = none
  double safety = 0.8;   // plan to budget * safety
  // Lk >= this forces chunking, in key chunks of at most this length; 0 = never.
  std::int64_t chunk_threshold_keys = 0;
  std::int64_t workspace_limit_bytes = std::int64_t{1} << 30;  // running-state memory cap
  std::int64_t fixed_chunk_keys = 0;  // > 0: use exactly this key-chunk length
  std::int64_t fixed_query_rows = 0;  // > 0: use exactly this query-group height
};

// Measured speed of one backend on this machine. Rates are keyed by
// "dtype/d<head_dim>/<causal|full|masked>"; a missing key falls back to the
// dtype's entry ("bfloat16"), then to `default_gflops`. All times in milliseconds.
struct DeviceProfile {
  std::string backend = "cpu";           // "cpu" or "cuda"
  std::string device_name;               // human-readable, for reports
  std::map<std::string, double> gflops;  // achieved GFLOP/s per key
  double default_gflops = 50.0;          // used when no key matches
  double dispatch_overhead_ms = 0.02;    // fixed cost per dispatch
  double submission_overhead_ms = 0.05;  // fixed cost per submission (commit + wait)
  double state_gbps = 20.0;              // running-state read/write bandwidth, GB/s
  std::int64_t fill_rows = 256;          // rows (B*Hq*queries) needed to keep the device busy
  std::int64_t query_tile = 48;          // kernel's query tile: group heights round to it
  std::int64_t key_tile = 64;            // kernel's key tile: chunk lengths round to it
  int samples = 0;                       // how many measurements refined it

  static std::string rate_key(DType dtype, std::int64_t head_dim, bool causal, bool masked);
  double rate_gflops(const std::string& key) const;
  // "" when every field is in range, else the first that is not
  // ("fill_rows = 1e+10 must be in [1, 16777216]"). load() and every call
  // that is given a profile check it.
  std::string invalid_field() const;

  // Small JSON file; throws IoError naming the path on failure.
  void save(const std::string& path) const;
  static DeviceProfile load(const std::string& path);
};

struct Plan {
  bool chunked = false;  // false: one single_pass dispatch
  // The work runs in passes, one KV head (with its query heads) after
  // another, each pass a plan of its own (Submission::kv_head): the CPU
  // backend's order for a chunked call with KV heads to share, so that a
  // head's keys and values stay in cache across the pass. Output rows are
  // final only in the last pass.
  bool by_kv_head = false;
  std::vector<Submission> submissions;
  std::int64_t query_rows = 0;       // query-group height (rows per group)
  std::int64_t chunk_keys = 0;       // nominal key-chunk length (0 if single pass)
  std::int64_t workspace_bytes = 0;  // running-state memory the plan needs
  double total_flops = 0;
  double predicted_ms = 0;
  std::string reason;  // why this route ("fits budget", ...)
  // False when some submission is predicted over budget * safety: the budget
  // is below what one sensible dispatch costs on this device (see warnings).
  bool budget_kept = true;
  // Said once per plan, e.g. that the budget cannot be met on this device
  // and the plan runs at the smallest sensible submission size instead.
  std::vector<std::string> warnings;

  std::size_t num_dispatches() const;
};

struct SubmissionReport {
  std::size_t dispatches = 0;
  // The kernels that ran this submission's dispatches, each named once in
  // order of first use: "cpu.avx2", "cpu.generic"; "cuda.wgmma" (Hopper
  // prefill), "cuda.wgmma.packed" (Hopper decode), "cuda.mma" (mma.sync
  // prefill), "cuda.vector" (float32 and short decode).
  std::vector<std::string> kernels;
  double flops = 0;
  double predicted_ms = 0;
  double measured_ms = 0;
  bool over_budget = false;
};

struct RunReport {
  std::string backend;
  Plan plan;  // the plan as finally executed (after re-plans)
  std::vector<SubmissionReport> submissions;
  double total_flops = 0;
  double total_ms = 0;  // sum of measured submission times
  double wall_ms = 0;   // host wall time of the whole call
  double budget_ms = 0;
  int budget_misses = 0;   // submissions whose measured time > budget
  int replans = 0;         // how often the remaining work was re-planned
  bool completed = false;  // false if cancelled or failed mid-run
  // Query ranges [q0, q1) whose output rows (all b, h) are final. When a run
  // stops early, rows outside these ranges were not written (or only in part).
  std::vector<std::pair<std::int64_t, std::int64_t>> finished_rows;
  // Things the caller should know, each said once (the plan's warnings, a
  // budget the device could not keep).
  std::vector<std::string> warnings;
};

// Progress between submissions: (submissions done, submissions planned,
// the report so far). Return false to cancel.
using ProgressCallback = std::function<bool(std::size_t, std::size_t, const RunReport&)>;

// Thrown when the progress callback cancels. Carries the partial report
// (also reachable as partial_report(), like any mid-run failure's).
class Cancelled : public Error {
 public:
  Cancelled(const std::string& what, RunReport report) : Error(ErrorCode::cancelled, what) {
    set_partial_report(std::make_shared<const RunReport>(std::move(report)));
  }
  const RunReport& report() const noexcept { return *partial_report(); }
};

}  // namespace longattn
