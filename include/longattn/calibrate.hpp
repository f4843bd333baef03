// Measuring a DeviceProfile: the speed plans are made from.
//
// The process-wide profile starts from defaults and refines itself from
// every run; calibrate() measures one up front instead, from attention()
// calls on generated inputs of the backend's own memory, so that the first
// plans of a fresh process are already right. Save it with
// DeviceProfile::save and pass it as AttentionOptions::profile.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "longattn/attention.hpp"

namespace longattn {

struct CalibrateOptions {
  BackendKind backend = BackendKind::automatic;  // automatic: CUDA when available
  // Rates are measured for every (dtype, head dim) and for full, causal and
  // masked (a boolean mask array) problems; fixed costs and the running
  // state's bandwidth on the first dtype and head dim.
  std::vector<DType> dtypes{DType::float32, DType::float16, DType::bfloat16};
  std::vector<std::int64_t> head_dims{64, 128};
  // The rate problems: batch 1, `heads` query heads (GQA 4:1 when divisible
  // by 4), q_len x k_len.
  std::int64_t heads = 8, q_len = 1024, k_len = 1024;
  int reps = 3;     // timed runs after a warm-up; the median counts
  int threads = 0;  // CPU threads, 0 = all
  void* cuda_stream = nullptr;
  // Called with one line per measurement (what the CLI prints); optional.
  std::function<void(const std::string&)> log;
};

// Measures and returns a profile for the backend. Throws InvalidArgument for
// bad options (naming them), Unsupported when a dtype or head dim is not
// served by the backend or when no rate at all could be measured.
DeviceProfile calibrate(const CalibrateOptions& options = {});

}  // namespace longattn
