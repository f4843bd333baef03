// A backend with a model of time and no computation, for executor tests that
// must not depend on the machine they run on. A submission "takes" its
// FLOPs at `gflops` (or at what `rate_of` says for each dispatch) plus the
// fixed costs, times a per-submission noise factor (log-normal), plus now
// and then a whole scheduler time slice, as a process sharing its cores
// with others sees. It can also fail at a chosen dispatch, and time its
// submissions only at finish() (as CUDA without a host wait does).
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "core/backend.hpp"

namespace longattn::plantest {

class ModelBackend final : public core::Backend {
 public:
  double gflops = 60;
  // When set, the rate (GFLOP/s) of each dispatch instead of `gflops`.
  std::function<double(const Dispatch&)> rate_of;
  double dispatch_ms = 0.02, submission_ms = 0.01;
  double noise_sigma = 0;  // log-normal spread of each submission's time
  double p_preempt = 0;    // chance a submission loses a time slice
  double p_stall = 0;      // chance a dispatch's fork/join waits out a time slice
  double slice_ms = 4;
  double first_ms = 0;         // extra time of the first submission (thread start-up)
  long fail_at_dispatch = -1;  // throw `failure` at this dispatch (0-based)
  std::function<void()> failure;
  bool timed_at_finish = false;  // end_submission() returns nothing, finish() the times

  long dispatches = 0;
  long finishes = 0;                                                   // calls of finish()
  std::vector<std::pair<std::int64_t, std::int64_t>> outputs_written;  // rows, in order

  std::string name() const override { return "model"; }
  std::string device_name() const override { return "a model of a busy CPU"; }
  core::StateView alloc_state(const core::Problem&, std::int64_t rows) override {
    state_.assign(1, 0.f);
    return {state_.data(), state_.data(), state_.data(), 0, rows};
  }
  void release_state(core::StateView& s) noexcept override { s = {}; }
  void begin_submission() override { ms_ = submission_ms; }
  const char* dispatch(const core::Problem&, const Dispatch& d, const core::StateView&) override {
    if (dispatches++ == fail_at_dispatch) failure();
    ms_ += dispatch_ms + d.flops / ((rate_of ? rate_of(d) : gflops) * 1e6);
    if (uniform_(rng_) < p_stall) ms_ += slice_ms;
    if (core::writes_output(d.mode)) outputs_written.emplace_back(d.rect.q0, d.rect.q1);
    return "model";
  }
  std::optional<double> end_submission() override {
    double t = ms_ * std::exp(noise_sigma * normal_(rng_));
    if (uniform_(rng_) < p_preempt) t += slice_ms;
    if (submissions_++ == 0) t += first_ms;
    if (!timed_at_finish) return t;
    untimed_.push_back(t);
    return std::nullopt;
  }
  std::vector<double> finish() override {
    ++finishes;
    return std::exchange(untimed_, {});
  }

 private:
  double ms_ = 0;
  long submissions_ = 0;
  std::vector<double> untimed_;
  std::vector<float> state_;
  std::mt19937_64 rng_{12345};
  std::normal_distribution<double> normal_{0, 1};
  std::uniform_real_distribution<double> uniform_{0, 1};
};

}  // namespace longattn::plantest
