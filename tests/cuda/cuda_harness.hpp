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

// Runs d on the GPU with a report (outputs in d.out / d.lse host bytes) and
// returns the kernels the report names (each once, over all submissions).
std::vector<std::string> run_cuda_kernels(CaseData& d, longattn::AttentionOptions base = {});

// compare(d), but for a case whose float64 reference would take long (about
// 0.1 s and more) only on a sample of query rows, of every batch and head:
// the first and last two rows, both sides of the first 64- and 128-row tile
// edges, three rows spread in between off the tile grid, and `rows` (rows
// the test knows to be special). Same metric, tolerance and guard check; the
// message names the sampled rows.
Comparison compare_sampled(CaseData& d, const std::vector<std::int64_t>& rows = {});

// A GPU test run once per kernel choice, as test_cuda_attention.cpp's
// CudaAttention: "auto" takes the Hopper (wgmma) kernel where it applies,
// decode-sized problems (at most 64 packed rows: GQA group x queries) in its
// packed mode; "mma" sets LONGATTN_CUDA_PREFILL=mma (read by each call's
// CUDA backend), which forces the mma.sync kernel for prefill and so the
// vector kernel (at most 8 packed rows) or mma.sync for decode, as on GPUs
// before Hopper. Instantiate with
//   INSTANTIATE_TEST_SUITE_P(Kernels, X, ::testing::Values("auto", "mma"), kernel_choice_name);
class KernelChoiceTest : public CudaTest, public ::testing::WithParamInterface<const char*> {
 protected:
  void SetUp() override;
  void TearDown() override;
  // Whether this parameter runs the Hopper kernel on this device.
  bool wgmma() const;
  // The kernel a single-pass run of c reports on this parameter (the CUDA
  // backend's dispatch rule, issue 12):
  // - float32: "cuda.vector";
  // - 16-bit on the Hopper kernel when wgmma(), this build has a Hopper
  //   width (64, 128, 256) that holds max(D, Dv) (narrower heads run padded)
  //   and the rows of q, k and v are whole 16-byte pieces at 16-byte aligned
  //   strides (D and Dv multiples of 8; not Case::misaligned; not the
  //   cache-slice layout, whose q rows are padded by 3 elements), with any
  //   mask: "cuda.wgmma.packed" up to 64 packed rows (GQA group x queries)
  //   of a power-of-2 group of at most 64, else (the group aside)
  //   "cuda.wgmma" above 8 packed rows;
  // - otherwise "cuda.vector" up to 8 packed rows, "cuda.mma" above.
  std::string expected_kernel(const Case& c) const;
};
std::string kernel_choice_name(const ::testing::TestParamInfo<const char*>& info);

}  // namespace lt::gpu
