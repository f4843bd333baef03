// The public entry points: validate once, pick the backend, plan, execute.
#include <mutex>
#include <thread>

#include "core/backend.hpp"
#include "core/executor.hpp"
#include "core/head_passes.hpp"
#include "core/planner.hpp"
#include "core/problem.hpp"

namespace longattn {
namespace {

BackendKind resolve(BackendKind b, const TensorView& q) {
  if (b != BackendKind::automatic) return b;
  return q.device == Device::cuda ? BackendKind::cuda : BackendKind::cpu;
}

int hardware_threads() {
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

// Starting points before any measurement; the executor refines them. The
// CPU numbers are per thread (scaled by the thread count); the CUDA ones are
// an H100-class card (DESIGN.md), off by a factor elsewhere, which the first
// submission's measurement corrects.
DeviceProfile initial_profile(BackendKind b) {
  DeviceProfile p;
  if (b == BackendKind::cuda) {
    p.backend = "cuda";
    p.default_gflops = 300000;
    p.gflops["float32"] = 20000;
    p.dispatch_overhead_ms = 0.01;
    p.submission_overhead_ms = 0.02;
    p.state_gbps = 2000;
    p.fill_rows = 132 * 128 * 2;
    p.query_tile = 128;
    p.key_tile = 128;
  } else {
    const int t = hardware_threads();
    p.backend = "cpu";
    p.default_gflops = 30.0 * t;
    p.dispatch_overhead_ms = 0.02;
    p.submission_overhead_ms = 0.01;
    p.state_gbps = 10;
    // 768 rows (heads x queries) a thread, four of the kernel's 192-row
    // work items: a dispatch ends when its last thread does, and a thread
    // that runs slower than the rest (a busy core, a descheduled vCPU) then
    // holds it back by part of an item. With a quarter of that, the 10 ms
    // budget cost 45% over the single pass at 16 threads of a Xeon VM, with
    // this 16-24%; the kernel now also ends such dispatches in smaller items
    // (kernel_impl.hpp), and more rows would shorten the key chunks, whose
    // running state each dispatch reads and writes (docs/BENCHMARKS.md).
    p.fill_rows = 48 * 16 * t;
    p.query_tile = 48;
    p.key_tile = 64;
  }
  return p;
}

struct ProcessProfiles {
  std::mutex mu;
  DeviceProfile cpu = initial_profile(BackendKind::cpu);
  DeviceProfile cuda = initial_profile(BackendKind::cuda);
  DeviceProfile& of(BackendKind b) { return b == BackendKind::cuda ? cuda : cpu; }
};

ProcessProfiles& profiles() {
  static ProcessProfiles p;
  return p;
}

std::unique_ptr<core::Backend> make_backend(BackendKind b, const AttentionOptions& o) {
  const core::BackendConfig cfg{o.threads, o.cuda_stream, o.host_wait};
  return b == BackendKind::cuda ? core::make_cuda_backend(cfg) : core::make_cpu_backend(cfg);
}

}  // namespace

Policy AttentionOptions::default_policy() {
  Policy p;
  p.budget_ms = 200;
  p.safety = 0.8;
  p.workspace_limit_bytes = std::int64_t{1} << 30;
  return p;
}

DeviceProfile default_profile(BackendKind backend) {
  ProcessProfiles& pp = profiles();
  std::lock_guard lock(pp.mu);
  return pp.of(backend == BackendKind::automatic ? BackendKind::cpu : backend);
}

// The profile a call plans with: the caller's (checked, since it may come
// from anywhere) or a copy of the process-wide one.
DeviceProfile profile_for(const AttentionOptions& options, BackendKind kind, const char* op) {
  if (!options.profile) return default_profile(kind);
  if (const std::string bad = options.profile->invalid_field(); !bad.empty())
    throw InvalidArgument(std::string("[") + op + "] profile->" + bad);
  return *options.profile;
}

// The profile a call plans with, for the threads it runs on: a CPU
// profile's fill_rows keeps every hardware thread busy, and a call on fewer
// threads needs that many fewer rows (more would cut its key chunks short
// for nothing: 16 threads' rows on 2 threads leave 256-key chunks at 10 ms).
DeviceProfile planning_profile(DeviceProfile p, BackendKind kind, const AttentionOptions& o) {
  const int hw = hardware_threads();
  if (kind == BackendKind::cpu && o.threads > 0 && o.threads < hw)
    p.fill_rows = std::max<std::int64_t>(1, p.fill_rows * o.threads / hw);
  return p;
}

Plan plan_attention(const TensorView& q, const TensorView& k, const TensorView& v,
                    const TensorView& out, const AttentionOptions& options) {
  const char* op = "longattn::plan_attention";
  const core::Problem p = core::validate_attention(q, k, v, out, options, op, false);
  const BackendKind kind = resolve(options.backend, q);
  return core::plan_call(p, planning_profile(profile_for(options, kind, op), kind, options),
                         options.policy, op);
}

void attention(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& out,
               const AttentionOptions& options) {
  const char* op = "longattn::attention";
  core::Problem p = core::validate_attention(q, k, v, out, options, op, true);
  const BackendKind kind = resolve(options.backend, q);
  // The call plans and refines a copy; what it measured is merged back
  // afterwards, so concurrent calls never plan from a half-updated profile.
  DeviceProfile local = planning_profile(profile_for(options, kind, op), kind, options);
  auto backend = make_backend(kind, options);
  Plan plan = core::plan_call(p, local, options.policy, op);
  // An array mask is summarized in blocks when the call is worth it (not a
  // decode step or a short single pass): the kernels then skip the tiles
  // it hides, and, given the counts, the planner re-plans at the cost of
  // what the mask shows.
  if (p.mask_kind != core::MaskKind::none && (plan.chunked || plan.predicted_ms > 1.0)) {
    backend->summarize_mask(p);
    if (p.mask_cost != nullptr) plan = core::plan_call(p, local, options.policy, op);
  }

  // A CUDA call that asks for no report and no progress, with a small
  // single-pass plan (decode, short prefill), is only enqueued on the
  // caller's stream, as CUDA libraries do: no events, no host wait (whatever
  // host_wait says); the output is ready when the stream gets there. Nothing
  // is measured, so the profile is left as it was. CPU calls are
  // synchronous anyway, so they keep timing and refining.
  if (kind == BackendKind::cuda && !options.report && !options.progress &&
      core::enqueueable(plan, options.policy)) {
    core::enqueue(p, *backend, plan);
    return;
  }

  // Each measurement is replayed onto the profile the call started from,
  // under the lock for the process-wide one: calls running side by side
  // each add their own measurements instead of overwriting each other's.
  std::vector<core::Observation> observed;
  auto merge_back = [&] {
    auto apply = [&](DeviceProfile& target) {
      if (target.device_name.empty()) target.device_name = backend->device_name();
      for (const core::Observation& o : observed) core::refine_profile(target, o);
    };
    if (options.profile) {
      apply(*options.profile);
    } else {
      ProcessProfiles& pp = profiles();
      std::lock_guard lock(pp.mu);
      apply(pp.of(kind));
    }
  };
  if (local.device_name.empty()) local.device_name = backend->device_name();
  try {
    RunReport r =
        core::execute(p, *backend, local, options.policy, options.progress, plan, &observed);
    merge_back();
    if (options.report) *options.report = std::move(r);
  } catch (const Error& e) {
    // A run that stopped part way (cancelled, a backend error, out of
    // memory) still measured what it ran, and its report says which rows
    // are final.
    merge_back();
    if (options.report && e.partial_report()) *options.report = *e.partial_report();
    throw;
  }
}

}  // namespace longattn
