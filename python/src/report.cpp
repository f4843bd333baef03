#include "report.hpp"

#include <nanobind/stl/string.h>

namespace longattn::py {
namespace {

using namespace nb::literals;

nb::module_ report_module() { return nb::module_::import_("longattn._report"); }

nb::list string_list(const std::vector<std::string>& v) {
  nb::list l;
  for (const std::string& s : v) l.append(nb::str(s.c_str(), s.size()));
  return l;
}

nb::list rows_list(const std::vector<std::pair<std::int64_t, std::int64_t>>& rows) {
  nb::list l;
  for (const auto& [a, b] : rows) l.append(nb::make_tuple(a, b));
  return l;
}

nb::object submission_report(const nb::handle& cls, const SubmissionReport& s) {
  return cls("dispatches"_a = s.dispatches, "kernels"_a = string_list(s.kernels),
             "flops"_a = s.flops, "predicted_ms"_a = s.predicted_ms,
             "measured_ms"_a = s.measured_ms, "over_budget"_a = s.over_budget);
}

// Everything but `plan` and `submissions`, which the callers fill.
void set_scalars(nb::handle obj, const RunReport& r) {
  obj.attr("backend") = nb::str(r.backend.c_str(), r.backend.size());
  obj.attr("total_flops") = r.total_flops;
  obj.attr("total_ms") = r.total_ms;
  obj.attr("wall_ms") = r.wall_ms;
  obj.attr("budget_ms") = r.budget_ms;
  obj.attr("budget_misses") = r.budget_misses;
  obj.attr("replans") = r.replans;
  obj.attr("completed") = r.completed;
  obj.attr("finished_rows") = rows_list(r.finished_rows);
  obj.attr("warnings") = string_list(r.warnings);
}

}  // namespace

nb::object plan_to_python(const Plan& p) {
  const nb::module_ m = report_module();
  const nb::object rect_cls = m.attr("Rect"), dispatch_cls = m.attr("Dispatch"),
                   submission_cls = m.attr("Submission");
  nb::list submissions;
  for (const Submission& s : p.submissions) {
    nb::list dispatches;
    for (const Dispatch& d : s.dispatches)
      dispatches.append(dispatch_cls(
          "rect"_a = rect_cls(d.rect.q0, d.rect.q1, d.rect.k0, d.rect.k1),
          "mode"_a = mode_name(d.mode), "flops"_a = d.flops, "predicted_ms"_a = d.predicted_ms));
    submissions.append(submission_cls("dispatches"_a = dispatches,
                                      "predicted_ms"_a = s.predicted_ms, "kv_head"_a = s.kv_head));
  }
  return m.attr("Plan")(
      "chunked"_a = p.chunked, "submissions"_a = submissions, "query_rows"_a = p.query_rows,
      "chunk_keys"_a = p.chunk_keys, "workspace_bytes"_a = p.workspace_bytes,
      "total_flops"_a = p.total_flops, "predicted_ms"_a = p.predicted_ms,
      "reason"_a = nb::str(p.reason.c_str(), p.reason.size()), "budget_kept"_a = p.budget_kept,
      "warnings"_a = string_list(p.warnings), "by_kv_head"_a = p.by_kv_head);
}

nb::object report_to_python(const RunReport& r) {
  const nb::module_ m = report_module();
  const nb::object sub_cls = m.attr("SubmissionReport");
  nb::object obj = m.attr("RunReport")();
  nb::list subs;
  for (const SubmissionReport& s : r.submissions) subs.append(submission_report(sub_cls, s));
  obj.attr("submissions") = subs;
  obj.attr("plan") = plan_to_python(r.plan);
  set_scalars(obj, r);
  return obj;
}

LiveReport::LiveReport() : report_(report_module().attr("RunReport")()) {
  submissions_ = report_.attr("submissions");
}

const nb::object& LiveReport::update(const RunReport& now) {
  if (now.submissions.size() < seen_) {  // not expected: rebuild rather than lie
    submissions_.attr("clear")();
    seen_ = 0;
  }
  if (seen_ < now.submissions.size()) {
    const nb::object cls = report_module().attr("SubmissionReport");
    for (; seen_ < now.submissions.size(); ++seen_)
      nb::borrow<nb::list>(submissions_).append(submission_report(cls, now.submissions[seen_]));
  }
  set_scalars(report_, now);
  // The executor fills the plan when the run ends; a report in progress has
  // none unless that changes.
  if (!now.plan.submissions.empty()) report_.attr("plan") = plan_to_python(now.plan);
  return report_;
}

}  // namespace longattn::py
