#include "progress.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <ostream>
#include <string>

namespace longattn::cli {
namespace {

// Set by the SIGINT handler, read by the progress callback. A lock-free
// atomic is the only state a signal handler may touch.
std::atomic<bool> g_interrupted{false};
static_assert(std::atomic<bool>::is_always_lock_free);

extern "C" void on_sigint(int) { g_interrupted.store(true); }

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
  g_interrupted.store(false);
  previous_handler_ = std::signal(SIGINT, on_sigint);
}

ProgressBar::~ProgressBar() {
  finish();
  std::signal(SIGINT, previous_handler_ == SIG_ERR ? SIG_DFL : previous_handler_);
}

bool ProgressBar::interrupted() const { return g_interrupted.load(); }

ProgressCallback ProgressBar::callback() {
  return [this](std::size_t done, std::size_t total, const RunReport& r) {
    return update(done, total, r);
  };
}

bool ProgressBar::update(std::size_t done, std::size_t total, const RunReport& r) {
  if (g_interrupted.load()) return false;
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
