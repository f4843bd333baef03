// Fixed cost per dispatch, learned from a run's recent submissions.
//
// The profile's dispatch_overhead_ms is what a dispatch costs on a quiet
// device. On a machine shared with other work, a CPU dispatch can wait out a
// scheduler time slice at its thread barrier (milliseconds), whatever its
// size: measured on 2 cores next to two busy processes, submissions of 6 and
// of 130 MFLOP both took about 16 ms. Read as throughput, that shrinks the
// plan until each submission is mostly waiting. Fitting
//
//     measured_ms - submission_overhead_ms = fixed_ms * dispatches + flops / rate
//
// over the last submissions separates the two: a large fixed cost makes the
// planner's dispatch floor (4x the fixed cost of work) keep dispatches large
// enough to amortize it, instead of making more of them.
#pragma once

#include <cstddef>
#include <deque>
#include <optional>

namespace longattn::core {

class FixedCostFit {
 public:
  // One timed submission: its dispatch count, work and time less the
  // submission's own fixed cost.
  void add(double dispatches, double flops, double ms);

  // The fitted fixed cost per dispatch (ms), once there are enough samples
  // and they say something: nullopt while they cannot tell fixed cost from
  // work (too few, or every submission of the same shape).
  std::optional<double> fixed_ms() const;

 private:
  struct Sample {
    double n, w, t;
  };
  static constexpr std::size_t kWindow = 32;  // recent submissions kept
  static constexpr std::size_t kMinSamples = 8;
  std::deque<Sample> window_;
};

}  // namespace longattn::core
