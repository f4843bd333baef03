// The interface every backend implements: run one dispatch over a rectangle
// in a mode, commit a submission, time it. The executor (executor.cpp) drives
// it; backends never plan.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/problem.hpp"
#include "longattn/plan.hpp"

namespace longattn::core {

// The float32 running state of one query group [q0, q0 + rows), for all
// (b, h). Layout: row r of head (b, h) is index (b * Hq + h) * rows + r.
// m is in base-2 units (see state.hpp). Lives where the backend computes.
struct StateView {
  float* m = nullptr;     // [B, Hq, rows]
  float* l = nullptr;     // [B, Hq, rows]
  float* o = nullptr;     // [B, Hq, rows, Dv], unnormalized
  std::int64_t q0 = 0;    // query row of state row 0: the dispatch's rect.q0 (set by the executor)
  std::int64_t rows = 0;  // group height the state was allocated for
};

// What a dispatch mode starts from and ends with, for every backend:
// single_pass and init start fresh (the sinks, if any), accumulate and
// finalize from the running state; single_pass and finalize write the
// normalized output (and LSE), init and accumulate the running state.
inline bool reads_state(Mode m) { return m == Mode::accumulate || m == Mode::finalize; }
inline bool writes_output(Mode m) { return m == Mode::single_pass || m == Mode::finalize; }

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;         // "cpu", "cuda"
  virtual std::string device_name() const = 0;  // "AMD EPYC (2 threads)", "NVIDIA H100 ..."

  // Running state for `rows` query rows. Allocated before any dispatch, so an
  // out-of-memory here leaves the caller's output untouched. Released by
  // release_state or the destructor.
  virtual StateView alloc_state(const Problem& p, std::int64_t rows) = 0;
  // Never throws: it also runs while another error unwinds.
  virtual void release_state(StateView& s) noexcept = 0;

  // Summarizes the array mask in blocks (mask_blocks.hpp) and points p at
  // the summary (p.mask_blocks, kept for the backend's lifetime) and, where
  // reading it back needs no wait that the call must not make, at its
  // counts for the planner (p.mask_cost). Called at most once per call,
  // before planning, and only for a mask. A backend without one leaves p
  // as it is (every tile is read, the mask costs as dense).
  virtual void summarize_mask(Problem& /*p*/) {}

  virtual void begin_submission() = 0;
  // Runs (or enqueues) one dispatch. `state` is ignored in single_pass mode.
  // A dispatch outside begin/end_submission (the executor's enqueue path)
  // is untimed: the CUDA backend only launches it on its stream, and
  // nothing waits for it. Returns the name of the kernel that ran it (a
  // string literal: "cpu.avx2", "cuda.wgmma", ...), which the run report
  // lists per submission, so that tests and users can see which path ran.
  virtual const char* dispatch(const Problem& p, const Dispatch& d, const StateView& state) = 0;
  // Commits the submission. Returns its measured time in ms when known now
  // (the CPU always, CUDA when waiting on the host), else nullopt.
  virtual std::optional<double> end_submission() = 0;
  // Waits for all work; returns the times of submissions whose end_submission
  // returned nullopt, in order.
  virtual std::vector<double> finish() = 0;
};

struct BackendConfig {
  int threads = 0;              // CPU
  void* cuda_stream = nullptr;  // CUDA
  bool host_wait = true;        // CUDA
};

std::unique_ptr<Backend> make_cpu_backend(const BackendConfig& cfg);
// Throws Unsupported when the library was built without CUDA (cuda_stub.cpp).
std::unique_ptr<Backend> make_cuda_backend(const BackendConfig& cfg);
bool cuda_available();  // built with CUDA and a device is present
// Head dims the CUDA build instantiated (D = Dv); empty without CUDA.
std::vector<std::int64_t> cuda_head_dims();
// A copy of `bytes` host bytes in memory of the current CUDA device, freed
// with the pointer (calibrate()'s inputs). Throws Unsupported without CUDA.
std::shared_ptr<void> cuda_upload(const void* host, std::size_t bytes);

}  // namespace longattn::core
