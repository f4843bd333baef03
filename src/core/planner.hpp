// The planner: a pure host function (problem, device profile, policy) -> Plan.
// See planner.cpp for the worked example.
#pragma once

#include <cstdint>
#include <string>

#include "core/problem.hpp"
#include "longattn/plan.hpp"

namespace longattn::core {

// Where a (re-)plan starts: query rows before `q_begin` are done; if
// `live_rows` > 0, the group [q_begin, q_begin + live_rows) already holds the
// keys [0, k_next) in its running state and must be continued as it is.
struct Cursor {
  std::int64_t q_begin = 0;
  std::int64_t live_rows = 0;
  std::int64_t k_next = 0;
};

// How far a rate the profile holds may be off. A rate the profile has not
// measured for the problem's key (a new dtype, head dim, mask kind or
// backend) is a guess (DeviceProfile::rate_gflops falls back to the dtype's
// rate, then to default_gflops), and the first submission of such a plan
// (the probe) is sized so that a rate this many times slower than the guess
// still keeps it within budget * safety.
//
// Why 32: the largest gap seen between a guess and the truth is on an H200,
// bf16 with an additive mask: 26 TFLOP/s where the CUDA profile guesses 300
// (11.5x), and 18x below the same shape without a mask (460), which is what
// a profile that measured only unmasked calls would guess. 32 covers that
// with a margin of about 2x, and with safety 0.8 the probe still lands within
// the 1.1 x budget of issue 12 at a rate 44x slower. More would buy little and
// cost measurability: at a 5 ms budget the probe is 4 ms / 32 = 0.125 ms, some
// ten times a GPU dispatch's fixed cost; at 64 or 128 it would shrink toward
// that fixed cost, and its time would say little about the rate.
inline constexpr double kRatePessimism = 32;

// Plans never hold more dispatches than this: enough for any budget the
// fixed costs allow (a 1M x 1M causal prefill at 100 ms on an H100 needs a
// few thousand), and small enough that planning and re-planning stay at
// milliseconds.
inline constexpr std::int64_t kMaxDispatches = std::int64_t{1} << 16;

// What a plan may believe of the profile's rate for the problem's key.
enum class RateTrust : std::uint8_t {
  // As the profile says: measured if it has a rate for the key, else a guess,
  // and a guessed plan starts with a probe (see make_plan).
  profile,
  // Measured once, by this run's probe: the first submission of the
  // re-plan is planned to a quarter of budget * safety, so that a probe that
  // ran faster than the work after it does not break the budget.
  probed,
};

// `op` names the API call in error messages.
Plan make_plan(const Problem& p, const DeviceProfile& profile, const Policy& policy,
               const Cursor& from = {}, const char* op = "longattn::plan_attention",
               RateTrust trust = RateTrust::profile);

// Running-state bytes of one query row (all b, h): (Dv + 2) floats per head.
std::int64_t state_row_bytes(const Problem& p);

// The device profile's rate key of this problem (DeviceProfile::rate_key).
std::string rate_key(const Problem& p);

}  // namespace longattn::core
