// The CPU backend's head-by-head order. A chunked dispatch holds one item of
// every KV head, so each item reads its head's keys and values anew from
// memory; a pass over one KV head at a time keeps them in cache, as the
// single pass does (DESIGN.md, the planner; measured +5% for the all-heads
// order at a 10 ms budget on a Zen 4, +1.4% to +3.6% head by head). Such a
// plan is a run of passes (Plan::by_kv_head), each the plan of the problem
// of one KV head with its query heads; the executor runs each submission on
// its head's problem.
#pragma once

#include <cstdint>

#include "core/planner.hpp"
#include "core/problem.hpp"
#include "longattn/plan.hpp"

namespace longattn::core {

// Whether a call planned `whole` (make_plan on all of p) on `profile` runs
// KV head by KV head instead: a chunked plan on the CPU backend's profile,
// with no array mask (its block summary is of the whole problem), more than
// one KV head, and enough rows in one pass to keep every thread busy.
bool runs_by_kv_head(const Problem& p, const DeviceProfile& profile, const Plan& whole);

// KV head g of p with its query heads, as a problem of its own: the same
// tensors, offset to that head (q, o, lse, sinks by g * group heads; k, v
// by g), Hq = group, Hkv = 1.
Problem kv_head_problem(const Problem& p, std::int64_t g);

// The plan that runs KV heads [head, Hkv) one after another: head `head`
// from `from` on (its cursor in that head's problem), planned with `trust`,
// then each later head whole. A cursor at the end of its head's rows starts
// at the next head.
Plan plan_by_kv_head(const Problem& p, const DeviceProfile& profile, const Policy& policy,
                     std::int64_t head, const Cursor& from, const char* op, RateTrust trust);

// The plan of a call: make_plan, or, where runs_by_kv_head says so, the
// plan by KV head from the start.
Plan plan_call(const Problem& p, const DeviceProfile& profile, const Policy& policy,
               const char* op);

}  // namespace longattn::core
