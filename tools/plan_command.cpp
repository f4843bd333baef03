// `longattn plan`: the plan for a shape and policy, computed by
// plan_attention() on views with null data, so nothing is allocated or run.
#include <fmt/format.h>
#include <fmt/ostream.h>

#include <ostream>
#include <set>

#include "commands.hpp"
#include "messages.hpp"
#include "output_paths.hpp"
#include "report.hpp"
#include "summary.hpp"

namespace longattn::cli {

int plan_command(const PlanArgs& a, std::ostream& out, std::ostream& err) {
  check_paths({{"--json", a.json_path}}, {{"--profile", a.policy.profile_path}});
  // Planning needs no device, so --device cuda plans for CUDA even on a
  // machine without one (with a saved CUDA profile, say).
  const BackendKind backend =
      a.policy.device == DeviceOption::cuda ? BackendKind::cuda
      : a.policy.device == DeviceOption::cpu
          ? BackendKind::cpu
          : (resolve_device(a.policy.device) == Device::cuda ? BackendKind::cuda
                                                             : BackendKind::cpu);
  const Device device = backend == BackendKind::cuda ? Device::cuda : Device::cpu;
  const ShapeViews sv = shape_views(a.spec, device);

  std::optional<DeviceProfile> profile = load_profile(a.policy.profile_path);

  AttentionOptions opt;
  opt.causal = a.spec.causal;
  opt.scale = a.spec.scale;
  opt.mask = sv.mask;
  opt.sinks = sv.sinks;
  opt.policy = a.policy.policy();
  opt.backend = backend;
  opt.threads = a.policy.threads;
  opt.profile = profile ? &*profile : nullptr;

  Plan plan;
  try {
    plan = plan_attention(sv.q, sv.k, sv.v, sv.out, opt);
  } catch (const InvalidArgument& e) {
    // The shape came from options: name them.
    throw UsageError(in_flag_terms(e.what(), FieldNames::policy_and_shape));
  }
  fmt::print(out, "longattn plan: {} on {}{}\n", a.spec.describe(), backend_name(backend),
             profile ? " (profile " + a.policy.profile_path + ")" : "");
  print_plan(out, plan, opt.policy, a.dispatches);
  std::set<std::string> said;
  print_warnings(err, plan.warnings, said);
  if (!a.json_path.empty()) {
    write_json(a.json_path, plan_json(plan));
    fmt::print(out, "wrote {}\n", a.json_path);
  }
  return kExitOk;
}

}  // namespace longattn::cli
