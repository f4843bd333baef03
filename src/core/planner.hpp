// The planner: a pure host function (problem, device profile, policy) -> Plan.
// See planner.cpp for the worked example.
#pragma once

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

// `op` names the API call in error messages.
Plan make_plan(const Problem& p, const DeviceProfile& profile, const Policy& policy,
               const Cursor& from = {}, const char* op = "longattn::plan_attention");

// Running-state bytes of one query row (all b, h): (Dv + 2) floats per head.
std::int64_t state_row_bytes(const Problem& p);

// The device profile's rate key of this problem (DeviceProfile::rate_key).
std::string rate_key(const Problem& p);

}  // namespace longattn::core
