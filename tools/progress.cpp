#include "progress.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <iterator>
#include <ostream>
#include <string>

namespace longattn::cli {
namespace {

// The signal that asked to stop (0: none), set by the handler and read by
// the progress callback. A lock-free atomic is the only state a signal
// handler may touch.
std::atomic<int> g_signal{0};
static_assert(std::atomic<int>::is_always_lock_free);

// The first signal asks for a clean stop at the next submission boundary,
// which with no budget can be the end of the whole run. A second one (Ctrl-C
// pressed again, `kill` repeated) means now: the default action ends the
// process at once, and outputs are safe because they are written by rename.
extern "C" void on_stop_signal(int sig) {
  int none = 0;
  if (g_signal.compare_exchange_strong(none, sig)) return;  // the first names the exit code
  ::signal(sig, SIG_DFL);                                   // both async-signal-safe
  ::raise(sig);  // delivered as soon as this handler returns
}

constexpr int kStopSignals[2] = {SIGINT, SIGTERM};

// Installs the handler unless the signal was ignored when the program
// started (a background job's SIGINT, nohup): such a signal is not meant for
// this process, and POSIX shells rely on the program leaving it ignored.
void install(int sig, struct sigaction& previous) {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // the flag is read between submissions; no call needs waking
  if (::sigaction(sig, nullptr, &previous) != 0 || previous.sa_handler == SIG_IGN) return;
  ::sigaction(sig, &sa, nullptr);
}

constexpr auto kShowAfter = std::chrono::seconds(1);
constexpr auto kRedrawEvery = std::chrono::milliseconds(100);

std::string seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", s);
  return buf;
}

}  // namespace

bool stderr_is_terminal() { return isatty(STDERR_FILENO) != 0; }

ProgressBar::ProgressBar(std::ostream& err, bool enabled)
    : err_(err), enabled_(enabled), start_(std::chrono::steady_clock::now()) {
  g_signal.store(0);
  for (std::size_t i = 0; i < std::size(kStopSignals); ++i) install(kStopSignals[i], previous_[i]);
}

ProgressBar::~ProgressBar() {
  finish();
  for (std::size_t i = 0; i < std::size(kStopSignals); ++i)
    ::sigaction(kStopSignals[i], &previous_[i], nullptr);
}

int ProgressBar::stop_signal() const { return g_signal.load(); }

ProgressCallback ProgressBar::callback() {
  return [this](std::size_t done, std::size_t total, const RunReport& r) {
    return update(done, total, r);
  };
}

bool ProgressBar::update(std::size_t done, std::size_t total, const RunReport& r) {
  // After the last submission there is nothing left to stop: cancelling then
  // would throw away a finished result (and a --out file) for no time saved.
  if (g_signal.load() != 0 && done < total) return false;
  const auto now = std::chrono::steady_clock::now();
  // Short runs stay silent; long ones redraw at most ten times a second.
  if (!enabled_ || now - start_ < kShowAfter || (drawn_ && now - last_draw_ < kRedrawEvery))
    return true;
  last_draw_ = now;
  drawn_ = true;

  // Progress by work (FLOPs), not by submission count: re-planning changes
  // the number of submissions left, but not the work.
  double done_flops = 0;
  double worst = 0;
  for (const auto& s : r.submissions) {
    done_flops += s.flops;
    worst = std::max(worst, s.measured_ms);
  }
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double frac = total_flops_ > 0 ? std::min(1.0, done_flops / total_flops_)
                      : total          ? static_cast<double>(done) / static_cast<double>(total)
                                       : 0.0;
  constexpr int kWidth = 30;
  const int filled = static_cast<int>(frac * kWidth);

  std::string line =
      "\r[" + std::string(static_cast<std::size_t>(filled), '=') + (filled < kWidth ? ">" : "") +
      std::string(static_cast<std::size_t>(std::max(0, kWidth - filled - 1)), ' ') + "] " +
      std::to_string(static_cast<int>(frac * 100)) + "%, " + std::to_string(done) + " of " +
      std::to_string(total) + " submissions, " + seconds(elapsed);
  if (frac > 0.01) line += ", ~" + seconds(elapsed / frac - elapsed) + " left";
  char buf[96];
  std::snprintf(buf, sizeof buf, ", worst %.1f ms", worst);
  line += buf;
  if (r.budget_ms > 0) {
    std::snprintf(buf, sizeof buf, " / budget %.0f ms", r.budget_ms);
    line += buf;
  }
  err_ << line << "   " << std::flush;
  return true;
}

void ProgressBar::finish() {
  if (!drawn_) return;
  err_ << "\r" << std::string(100, ' ') << "\r" << std::flush;
  drawn_ = false;
}

}  // namespace longattn::cli
