// Runs test cases on the GPU: every buffer of an lt::CaseData (the whole
// allocation, guards and NaN padding included) is mirrored in device memory,
// longattn::attention runs on device views, outputs come back for
// lt::compare().
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "support/support.hpp"

namespace lt::gpu {

// Empty when a CUDA device is usable, else why not (for GTEST_SKIP).
std::string why_no_device();

// Skips the test, visibly, when there is no device.
class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string why = why_no_device();
    if (!why.empty()) GTEST_SKIP() << "no CUDA device: " << why;
  }
};

// Every buffer of a CaseData mirrored in device memory (the whole
// allocation, as on the host), for calls whose timing the test controls:
// attention() only enqueues on the stream in `base.cuda_stream` when the
// call is untimed, so download() must come after that stream has finished.
class DeviceCase {
 public:
  explicit DeviceCase(CaseData& d);
  ~DeviceCase();
  DeviceCase(const DeviceCase&) = delete;
  DeviceCase& operator=(const DeviceCase&) = delete;

  // longattn::attention on the device views, backend = cuda, with the
  // case's options on top of `base`.
  void attention(longattn::AttentionOptions base = {}) const;
  // Outputs back to NaN + guard, on the host and the device.
  void reset_outputs();
  // Device outputs into d.out / d.lse host bytes (synchronous cudaMemcpy).
  void download();

 private:
  CaseData& d_;
  std::vector<std::pair<Buffer*, void*>> dev_;
  Tensors views_;
};

// Runs d on the GPU (backend = cuda) with `base` options; outputs land in
// d.out / d.lse host bytes.
void run_cuda(CaseData& d, longattn::AttentionOptions base = {});

// Runs on the GPU and checks against the reference; returns the comparison.
Comparison check_cuda(const Case& c, const longattn::AttentionOptions& base = {});

// Runs a case on the CPU and the GPU and returns max |gpu - cpu| / max(1, max |cpu|)
// over O (the same metric as the reference comparison).
double cuda_vs_cpu(const Case& c, const longattn::AttentionOptions& base = {});

// Head dims this build instantiated.
std::vector<std::int64_t> built_head_dims();

// Whether the current device is a Hopper (sm_90), where "auto" takes the
// wgmma kernel.
bool is_hopper();

// Runs a case on the GPU with a report, checks it against the reference and
// returns the kernels the report names (each once, over all submissions).
std::vector<std::string> check_cuda_kernels(const Case& c, longattn::AttentionOptions base = {});

}  // namespace lt::gpu
