#include "core/head_passes.hpp"

#include <algorithm>
#include <string>
#include <type_traits>

namespace longattn::core {
namespace {

// `base` moved by `elements` of type t; null stays null (a plan reads no
// data, and plan_attention is given none).
template <class Ptr>
Ptr offset(Ptr base, DType t, std::int64_t elements) {
  if (base == nullptr) return base;
  using Byte = std::conditional_t<std::is_const_v<std::remove_pointer_t<Ptr>>, const char, char>;
  return static_cast<Byte*>(base) + elements * static_cast<std::int64_t>(dtype_size(t));
}

// Appends `part`, the plan of KV head `head`, to the passes in `to`.
void append_pass(Plan& to, const Plan& part, std::int64_t head) {
  for (Submission s : part.submissions) {
    s.kv_head = head;
    to.submissions.push_back(std::move(s));
  }
  to.query_rows = std::max(to.query_rows, part.query_rows);
  to.chunk_keys = std::max(to.chunk_keys, part.chunk_keys);
  to.workspace_bytes = std::max(to.workspace_bytes, part.workspace_bytes);
  to.total_flops += part.total_flops;
  to.predicted_ms += part.predicted_ms;
  to.budget_kept = to.budget_kept && part.budget_kept;
  // Said once per plan: the passes' plans say the same thing (that the
  // budget cannot be kept) with their own figures, so the first one's.
  if (to.warnings.empty()) to.warnings = part.warnings;
}

// The rows (B x heads x queries) a pass's dispatch holds at least: as many
// as the smallest dispatch of the all-heads plan (one query tile of every
// head), or the profile's fill_rows if more. Fewer would leave the threads
// fewer items to balance: passes planned to fill_rows alone (8 items a
// dispatch on 2 threads, against 32) gained nothing on the 16K causal
// square where these gain 5% (docs/BENCHMARKS.md).
std::int64_t pass_rows(const Problem& p, const DeviceProfile& profile) {
  return std::max(profile.fill_rows, p.B * p.Hq * std::max<std::int64_t>(1, profile.query_tile));
}

// The profile a pass is planned with: fill_rows raised to pass_rows.
DeviceProfile pass_profile(const Problem& p, const DeviceProfile& profile) {
  DeviceProfile pp = profile;
  pp.fill_rows = pass_rows(p, profile);
  return pp;
}

}  // namespace

bool runs_by_kv_head(const Problem& p, const DeviceProfile& profile, const Plan& whole) {
  // A plan that keeps its budget splits the work by the budget, and its
  // passes hold about as many dispatches in all; one at the dispatch floor
  // (a budget below what one sensible dispatch costs) would hold about that
  // many a pass, and planning them would cost as much again a pass.
  return whole.chunked && whole.budget_kept &&
         static_cast<std::int64_t>(whole.num_dispatches()) <= kMaxDispatches / 4 &&
         profile.backend == "cpu" && p.mask_kind == MaskKind::none && p.Hkv > 1 &&
         p.B * p.group * p.Lq >= pass_rows(p, profile);
}

Problem kv_head_problem(const Problem& p, std::int64_t g) {
  Problem h = p;
  const std::int64_t first_q = g * p.group;
  h.q = offset(p.q, p.dtype, first_q * p.q_stride[1]);
  h.o = offset(p.o, p.dtype, first_q * p.o_stride[1]);
  h.k = offset(p.k, p.dtype, g * p.k_stride[1]);
  h.v = offset(p.v, p.dtype, g * p.v_stride[1]);
  if (p.lse) h.lse = p.lse + first_q * p.lse_stride[1];
  if (p.sinks) h.sinks = p.sinks + first_q * p.sinks_stride;
  h.Hq = p.group;
  h.Hkv = 1;
  return h;
}

Plan plan_by_kv_head(const Problem& p, const DeviceProfile& call_profile, const Policy& policy,
                     std::int64_t head, const Cursor& from, const char* op, RateTrust trust) {
  const DeviceProfile profile = pass_profile(p, call_profile);
  Plan plan;
  plan.chunked = true;
  plan.by_kv_head = true;
  if (head >= p.Hkv) {
    plan.reason = "nothing to compute: every KV head done";
    return plan;
  }
  // Every head's problem has the same shape (only its tensors move), so one
  // plan of a whole head serves each later head.
  const Problem one = kv_head_problem(p, head);
  const Plan first = make_plan(one, profile, policy, from, op, trust);
  append_pass(plan, first, head);
  if (head + 1 < p.Hkv) {
    // Later heads run after this one's measurements: planned at the rate it
    // plans with, with no probe of their own (a guessed rate is probed by
    // the first head, and the executor re-plans the rest from it).
    // A whole head planned on a measured rate is already that plan.
    const std::string key = rate_key(one);
    const bool same = from.q_begin == 0 && from.live_rows == 0 && trust == RateTrust::profile &&
                      profile.gflops.count(key) > 0;
    auto plan_later = [&] {
      DeviceProfile known = profile;
      known.gflops[key] = profile.rate_gflops(key);
      return make_plan(one, known, policy, {}, op, RateTrust::profile);
    };
    const Plan later = same ? first : plan_later();
    for (std::int64_t g = head + 1; g < p.Hkv; ++g) append_pass(plan, later, g);
    if (first.submissions.empty()) plan.reason = later.reason;
  }
  if (plan.reason.empty()) plan.reason = first.reason;
  plan.reason += "; KV head by KV head from head " + std::to_string(head) + " of " +
                 std::to_string(p.Hkv) + " (each head's keys and values stay in cache)";
  return plan;
}

Plan plan_call(const Problem& p, const DeviceProfile& profile, const Policy& policy,
               const char* op) {
  Plan whole = make_plan(p, profile, policy, {}, op);
  if (!runs_by_kv_head(p, profile, whole)) return whole;
  Plan passes = plan_by_kv_head(p, profile, policy, 0, {}, op, RateTrust::profile);
  // Each pass keeps within kMaxDispatches, all of them together may not: a
  // budget that small for this much work keeps the all-heads plan, whose
  // dispatch floor rises with the whole call's work. (A re-plan by KV head
  // after a much slower rate than planned may still exceed it, by at most
  // the number of KV heads; its planning time stays at two plans.)
  if (static_cast<std::int64_t>(passes.num_dispatches()) > kMaxDispatches) return whole;
  return passes;
}

}  // namespace longattn::core
