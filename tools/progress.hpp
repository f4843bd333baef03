// A progress bar on stderr for runs longer than a second, driven by
// AttentionOptions::progress (called between submissions). It also turns
// Ctrl-C (SIGINT) and SIGTERM (what `kill` and `timeout` send) into a clean
// cancellation: the callback returns false, the library stops at the next
// submission boundary and throws Cancelled with the partial report, instead
// of the process dying mid-write. A second signal ends the process at once.
#pragma once

#include <signal.h>

#include <chrono>
#include <iosfwd>

#include "longattn/plan.hpp"

namespace longattn::cli {

class ProgressBar {
 public:
  // enabled = false: never draws, but still cancels on SIGINT and SIGTERM.
  ProgressBar(std::ostream& err, bool enabled);
  ~ProgressBar();  // restores the previous SIGINT and SIGTERM handlers
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  // The callback to put in AttentionOptions::progress. Valid while *this is.
  ProgressCallback callback();
  // The whole call's FLOPs (Plan::total_flops), so that the bar measures
  // work done; without it, submissions done of those planned.
  void set_total_flops(double flops) { total_flops_ = flops; }
  // Clears the bar line if one was drawn.
  void finish();
  // SIGINT or SIGTERM if one asked to stop while the bar existed, else 0.
  int stop_signal() const;

 private:
  bool update(std::size_t done, std::size_t total, const RunReport& report);

  std::ostream& err_;
  bool enabled_;
  bool drawn_ = false;
  double total_flops_ = 0;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
  struct sigaction previous_[2]{};  // SIGINT, SIGTERM
};

// Whether stderr is a terminal (the bar uses '\r' to redraw in place).
bool stderr_is_terminal();

}  // namespace longattn::cli
