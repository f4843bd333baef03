// The three subcommands as plain functions of plain argument structs, so
// tests run them in-process. cli.cpp fills the structs from the command line.
//
// Exit codes: 0 success; 1 runtime or file error (an unreadable input, an
// output directory that does not exist or is not writable, a failed
// reference check); 2 usage error (a bad option or combination, two outputs
// naming one file); 128 + the signal when SIGINT (130, Ctrl-C) or SIGTERM
// (143, `kill`, `timeout`) stopped a run at a submission boundary, after the
// finished rows were printed and --report written, as the shell reports a
// process killed by that signal.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "inputs.hpp"
#include "longattn/attention.hpp"

namespace longattn::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitRuntime = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitSignalBase = 128;  // + SIGINT = 130, + SIGTERM = 143

// A bad combination of arguments found after parsing; exit code 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class DeviceOption : std::uint8_t { automatic, cpu, cuda };

// Everything the planner reads, as options.
struct PolicyArgs {
  double budget_ms = 50;  // per submission; 0 = none
  double safety = 0.8;
  std::int64_t chunk_keys = 0;       // > 0: fixed key-chunk length
  std::int64_t query_rows = 0;       // > 0: fixed query-group height
  std::int64_t chunk_threshold = 0;  // Lk >= this forces chunking; 0 = never
  double workspace_mb = 1024;
  std::string profile_path;  // load a DeviceProfile from here
  DeviceOption device = DeviceOption::automatic;
  int threads = 0;

  Policy policy() const;
};

struct RunArgs {
  ProblemSpec spec;
  PolicyArgs policy;
  // .npy inputs; when q_path is set, the spec's shapes and dtype come from
  // the files instead.
  std::string q_path, k_path, v_path, mask_path, sinks_path, out_path, lse_path;
  bool bf16_bits = false;        // '<u2' files hold bfloat16
  std::int64_t check_rows = -1;  // -1: 32 for generated inputs, 0 for files
  double tolerance = 0;          // 0: per-dtype default
  std::string report_path, timeline_path, save_profile_path;
  bool all_submissions = false;  // print every submission, not a summary
  bool progress = true;          // draw the bar when stderr is a terminal
  int repeat = 1;                // run this many times, report the last
};

struct PlanArgs {
  ProblemSpec spec;
  PolicyArgs policy;
  std::string json_path;
  bool dispatches = false;  // list every dispatch
};

struct CalibrateArgs {
  std::string out_path = "longattn_profile.json";
  DeviceOption device = DeviceOption::automatic;
  int threads = 0;
  std::vector<std::string> dtypes = {"f32", "f16", "bf16"};
  std::vector<std::int64_t> head_dims = {64, 128};
  std::int64_t q_len = 1024;
  std::int64_t k_len = 1024;
  std::int64_t heads = 8;
  int reps = 3;
};

int run_command(const RunArgs& args, std::ostream& out, std::ostream& err);
int plan_command(const PlanArgs& args, std::ostream& out, std::ostream& err);
int calibrate_command(const CalibrateArgs& args, std::ostream& out, std::ostream& err);

// Picks the backend for --device; auto means CUDA when this build has it and
// a device is present. Throws UsageError for cuda without CUDA.
Device resolve_device(DeviceOption d);
DType parse_dtype(const std::string& s);  // f32|f16|bf16 (and long names)
// --profile: the loaded profile (none for an empty path); errors are IoError
// naming --profile and the path.
std::optional<DeviceProfile> load_profile(const std::string& path);

// The whole program: parses argv and runs a subcommand. main.cpp is a call to
// this; tests call it with their own streams.
int main(int argc, const char* const* argv, std::ostream& out, std::ostream& err);

}  // namespace longattn::cli
