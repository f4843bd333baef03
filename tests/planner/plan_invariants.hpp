// Checks that a Plan is a valid plan for a problem, written from the problem
// statement alone (independent of the planner's code):
//  - query groups tile [0, Lq) in order, each group's dispatches consecutive
//    (only one group's running state alive at a time);
//  - a group's key chunks tile [0, K) in order, K = the keys its last row can
//    see (bottom-right causal), so every visible (query, key) pair is covered
//    exactly once and nothing past the group's last visible key is planned;
//  - modes: one chunk = single_pass, else init, accumulate..., finalize;
//  - predicted time of every submission within budget * safety, unless the
//    submission is one dispatch that cannot be split further;
//  - workspace within the policy's limit.
// Returns "" when valid, else what is wrong.
#pragma once

#include <algorithm>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "longattn/plan.hpp"

namespace longattn::plantest {

struct Shape {
  std::int64_t B, Hq, Lq, Lk, D, Dv;
  bool causal;
};

inline std::int64_t visible_end(const Shape& s, std::int64_t i) {
  if (!s.causal) return s.Lk;
  return std::clamp<std::int64_t>(i + (s.Lk - s.Lq) + 1, 0, s.Lk);
}

// The rules for one pass over every query row: a plan, or one KV head's
// pass of a plan by KV head.
inline std::string check_pass(const Shape& s, const Plan& plan, const Policy& pol,
                              std::int64_t key_tile) {
  std::ostringstream err;
  std::int64_t next_q = 0, group_q1 = -1, next_k = 0;
  std::size_t chunks_in_group = 0;
  Mode last_mode = Mode::single_pass;
  auto close_group = [&]() -> bool {
    if (group_q1 < 0) return true;
    const std::int64_t want = visible_end(s, group_q1 - 1);
    if (next_k != want && !(want == 0 && next_k == 0)) {
      err << "group ending at q=" << group_q1 << " covers keys [0," << next_k << ") but sees [0,"
          << want << ")";
      return false;
    }
    if (chunks_in_group > 1 && last_mode != Mode::finalize) {
      err << "group ending at q=" << group_q1 << " does not end with finalize";
      return false;
    }
    return true;
  };
  const double target = pol.budget_ms > 0 ? pol.budget_ms * pol.safety : 1e300;
  for (const Submission& sub : plan.submissions) {
    if (sub.dispatches.empty()) return "empty submission";
    double sum = 0;
    for (const Dispatch& d : sub.dispatches) {
      sum += d.predicted_ms;
      const Rect& r = d.rect;
      if (r.q0 >= r.q1 || r.k0 > r.k1) {
        err << "bad rect q[" << r.q0 << "," << r.q1 << ") k[" << r.k0 << "," << r.k1 << ")";
        return err.str();
      }
      const bool starts = d.mode == Mode::single_pass || d.mode == Mode::init;
      if (starts) {
        if (!close_group()) return err.str();
        if (r.q0 != next_q) {
          err << "group starts at q=" << r.q0 << ", expected " << next_q;
          return err.str();
        }
        if (r.k0 != 0) {
          err << "group q=" << r.q0 << " starts at key " << r.k0;
          return err.str();
        }
        group_q1 = r.q1;
        next_q = r.q1;
        next_k = 0;
        chunks_in_group = 0;
      } else {
        if (r.q1 != group_q1 || r.q0 != next_q - (group_q1 - r.q0) || last_mode == Mode::finalize ||
            last_mode == Mode::single_pass) {
          err << "continuation " << mode_name(d.mode) << " q[" << r.q0 << "," << r.q1
              << ") outside a live group";
          return err.str();
        }
      }
      if (r.k0 != next_k) {
        err << "chunk q[" << r.q0 << "," << r.q1 << ") starts at key " << r.k0 << ", expected "
            << next_k;
        return err.str();
      }
      if (r.k1 > r.k0 && visible_end(s, r.q1 - 1) <= r.k0) {
        err << "rect q[" << r.q0 << "," << r.q1 << ") k[" << r.k0 << "," << r.k1
            << ") is fully hidden by causal";
        return err.str();
      }
      if (d.mode == Mode::single_pass && chunks_in_group != 0) return "single_pass inside a group";
      next_k = r.k1;
      ++chunks_in_group;
      last_mode = d.mode;
    }
    const bool unsplittable = sub.dispatches.size() == 1 &&
                              sub.dispatches[0].rect.k1 - sub.dispatches[0].rect.k0 <= key_tile &&
                              sub.dispatches[0].rect.q1 - sub.dispatches[0].rect.q0 <= 1;
    if (sum > target * (1 + 1e-9) + 1e-12 && !unsplittable &&
        sub.predicted_ms > target * (1 + 1e-9)) {
      err << "submission predicted " << sub.predicted_ms << " ms > target " << target << " ms with "
          << sub.dispatches.size() << " dispatches, first q[" << sub.dispatches[0].rect.q0 << ","
          << sub.dispatches[0].rect.q1 << ") k[" << sub.dispatches[0].rect.k0 << ","
          << sub.dispatches[0].rect.k1 << ") " << mode_name(sub.dispatches[0].mode);
      return err.str();
    }
  }
  if (!close_group()) return err.str();
  if (next_q != s.Lq) {
    err << "query groups cover [0," << next_q << ") of Lq = " << s.Lq;
    return err.str();
  }
  if (plan.workspace_bytes > pol.workspace_limit_bytes) {
    err << "workspace " << plan.workspace_bytes << " > limit " << pol.workspace_limit_bytes;
    return err.str();
  }
  return "";
}

// check_pass on the plan, or, for a plan by KV head, on each head's pass:
// the heads 0, 1, ... in order, each one run of submissions.
inline std::string check_plan(const Shape& s, const Plan& plan, const Policy& pol,
                              std::int64_t key_tile) {
  if (!plan.by_kv_head) {
    for (const Submission& sub : plan.submissions)
      if (sub.kv_head != -1)
        return "kv_head " + std::to_string(sub.kv_head) + " in a plan of all heads";
    return check_pass(s, plan, pol, key_tile);
  }
  std::vector<Plan> passes;
  for (const Submission& sub : plan.submissions) {
    const auto head = static_cast<std::int64_t>(passes.size()) - 1;
    if (sub.kv_head != head) {
      if (sub.kv_head != head + 1)
        return "KV head " + std::to_string(sub.kv_head) + " after head " + std::to_string(head);
      passes.emplace_back();
      passes.back().workspace_bytes = plan.workspace_bytes;
    }
    passes.back().submissions.push_back(sub);
  }
  for (std::size_t h = 0; h < passes.size(); ++h)
    if (std::string err = check_pass(s, passes[h], pol, key_tile); !err.empty())
      return "KV head " + std::to_string(h) + ": " + err;
  return "";
}

}  // namespace longattn::plantest
