// longattn._core: the one native module of the Python package. It turns
// arrays into tensor views (views.hpp), calls the C++ API with the GIL
// released, and hands back plans, reports and errors as Python objects. No
// math and no second copy of the argument checks: the C++ boundary's
// messages reach Python unchanged. Allocating outputs, framework types,
// streams and the public signatures live in python/longattn/ (pure Python).
#include <nanobind/nanobind.h>
#include <nanobind/stl/function.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include <optional>
#include <vector>

#include "device.hpp"
#include "errors.hpp"
#include "longattn/longattn.hpp"
#include "report.hpp"
#include "types.hpp"
#include "views.hpp"

namespace longattn::py {
namespace {

using namespace nb::literals;

// The options of a call, checked by the Python layer (longattn._api) and
// kept as one object: a call passes it as one argument instead of twelve
// keywords, and calls with the same options reuse it. The arrays, the
// stream, progress and report are per call and not part of it.
struct CallOptions {
  bool bshd = false;
  AttentionOptions opt;
  nb::object profile;  // keeps opt.profile alive
};

CallOptions make_options(bool bshd, bool causal, bool causal_top_left, std::optional<double> scale,
                         double budget_ms, double safety, std::int64_t chunk_threshold_keys,
                         std::int64_t workspace_limit_bytes, std::int64_t fixed_chunk_keys,
                         std::int64_t fixed_query_rows, nb::object profile, int threads,
                         std::int64_t window_left, std::int64_t window_right, double softcap) {
  CallOptions o;
  o.bshd = bshd;
  o.opt.scale = scale;
  o.opt.causal = causal;
  o.opt.causal_align = causal_top_left ? CausalAlign::top_left : CausalAlign::bottom_right;
  o.opt.window_left = window_left;
  o.opt.window_right = window_right;
  o.opt.softcap = static_cast<float>(softcap);
  o.opt.policy.budget_ms = budget_ms;
  o.opt.policy.safety = safety;
  o.opt.policy.chunk_threshold_keys = chunk_threshold_keys;
  o.opt.policy.workspace_limit_bytes = workspace_limit_bytes;
  o.opt.policy.fixed_chunk_keys = fixed_chunk_keys;
  o.opt.policy.fixed_query_rows = fixed_query_rows;
  if (!profile.is_none()) o.opt.profile = nb::cast<DeviceProfile*>(profile);
  o.profile = std::move(profile);
  o.opt.threads = threads;
  return o;
}

// Runs `f` (a call into the library, GIL released); an InvalidArgument
// about the views gets the notes that say how the arrays were read (a
// "bshd" array's dims appear swapped in the library's logical shapes).
template <class F>
void with_notes(const ArraySet& arrays, F&& f) {
  try {
    f();
  } catch (const InvalidArgument& e) {
    const std::string notes = arrays.notes_for(e.what());
    if (notes.empty() || e.partial_report()) throw;
    throw InvalidArgument(e.what() + notes);
  }
}

// The progress callback: called by the executor between submissions, on the
// calling thread, without the GIL. Python sees
//   progress(done_rows, total_rows, report_so_far)
// where done_rows counts the query rows whose output is final. None or a
// true value goes on; a false one cancels. An exception it raises stops the
// run and reaches the caller as it is (the executor passes it on).
class ProgressBridge {
 public:
  ProgressBridge(nb::object fn, std::int64_t total_rows)
      : fn_(std::move(fn)), total_rows_(total_rows) {}

  bool operator()(std::size_t /*done*/, std::size_t /*planned*/, const RunReport& r) {
    nb::gil_scoped_acquire gil;
    std::int64_t rows = 0;
    for (const auto& [q0, q1] : r.finished_rows) rows += q1 - q0;
    const nb::object& report = live_.update(r);
    const nb::object answer = fn_(rows, total_rows_, report);
    if (answer.is_none()) return true;
    const int go = PyObject_IsTrue(answer.ptr());
    if (go < 0) throw nb::python_error();
    return go != 0;
  }

 private:
  nb::object fn_;
  std::int64_t total_rows_;
  LiveReport live_;
};

// The arrays and options of one attention() or plan() call.
struct Call {
  ArraySet arrays;
  TensorView q, k, v, out;
  AttentionOptions opt;

  Call(const char* op, nb::handle q_, nb::handle k_, nb::handle v_, nb::handle out_, nb::handle lse,
       nb::handle mask, nb::handle sinks, const CallOptions& options)
      : arrays(op), opt(options.opt) {
    const Arrange layout = options.bshd ? Arrange::bshd : Arrange::as_is;
    q = arrays.input(q_, "q", layout);
    k = arrays.input(k_, "k", layout);
    v = arrays.input(v_, "v", layout);
    out = arrays.output(out_, "out", layout);
    opt.mask = arrays.input(mask, "mask", Arrange::leading_ones);
    opt.sinks = arrays.input(sinks, "sinks");
    opt.lse = arrays.output(lse, "lse");
  }
};

nb::object attention(nb::handle q, nb::handle k, nb::handle v, nb::handle out, nb::handle lse,
                     nb::handle mask, nb::handle sinks, const CallOptions& options,
                     std::uintptr_t stream, nb::object progress, bool want_report) {
  // The arrays' CUDA device stays current until `c` is destroyed (ArraySet).
  Call c("longattn.attention", q, k, v, out, lse, mask, sinks, options);
  c.opt.cuda_stream = reinterpret_cast<void*>(stream);
  RunReport report;
  if (want_report) c.opt.report = &report;
  std::optional<ProgressBridge> bridge;
  if (!progress.is_none()) {
    bridge.emplace(std::move(progress), c.q.rank == 4 ? c.q.shape[2] : 0);
    c.opt.progress = [&bridge](std::size_t done, std::size_t planned, const RunReport& r) {
      return (*bridge)(done, planned, r);
    };
  }
  {
    nb::gil_scoped_release nogil;
    with_notes(c.arrays, [&] { longattn::attention(c.q, c.k, c.v, c.out, c.opt); });
  }
  return want_report ? report_to_python(report) : nb::none();
}

nb::object plan(nb::handle q, nb::handle k, nb::handle v, nb::handle out, bool want_lse,
                nb::handle mask, nb::handle sinks, const CallOptions& options) {
  Call c("longattn.plan", q, k, v, out, nb::none(), mask, sinks, options);
  // A plan reads only shapes and dtypes: outputs not given are described
  // without memory (plan_attention accepts null data).
  if (!c.out.present() && c.q.rank == 4 && c.v.rank == 4)
    c.out = contiguous(nullptr, c.q.dtype, {c.q.shape[0], c.q.shape[1], c.q.shape[2], c.v.shape[3]},
                       c.q.device);
  if (want_lse && c.q.rank == 4)
    c.opt.lse = contiguous(nullptr, DType::float32, 3,
                           {c.q.shape[0], c.q.shape[1], c.q.shape[2], 0}, c.q.device);
  Plan p;
  {
    nb::gil_scoped_release nogil;
    with_notes(c.arrays, [&] { p = plan_attention(c.q, c.k, c.v, c.out, c.opt); });
  }
  return plan_to_python(p);
}

void merge(const nb::sequence& parts, nb::handle out, nb::handle out_lse, bool bshd, int threads) {
  ArraySet arrays("longattn.merge_states");
  const Arrange layout = bshd ? Arrange::bshd : Arrange::as_is;
  std::vector<PartialResult> views;
  const std::size_t n = nb::len(parts);
  for (std::size_t i = 0; i < n; ++i) {
    const nb::object part = parts[i];
    const std::string name = "parts[" + std::to_string(i) + "]";
    if (!nb::isinstance<nb::sequence>(part) || nb::len(part) != 2)
      throw InvalidArgument("[longattn.merge_states] " + name +
                            " must be a pair (o, lse) of arrays");
    views.push_back(
        {arrays.input(part[0], name + ".o", layout), arrays.input(part[1], name + ".lse")});
  }
  const TensorView o = arrays.output(out, "out", layout);
  const TensorView l = arrays.output(out_lse, "out_lse");
  nb::gil_scoped_release nogil;
  with_notes(arrays, [&] { merge_states(views, o, l, threads); });
}

BackendKind parse_backend(const std::string& name) {
  if (name == "cpu") return BackendKind::cpu;
  if (name == "cuda") return BackendKind::cuda;
  throw InvalidArgument("[longattn.default_profile] backend = '" + name +
                        "' must be 'cpu' or 'cuda'");
}

// For the tests of the error translation (errors.hpp): raises the C++ error
// of `code` with `message`, carrying a report that finished rows [0, rows)
// when rows > 0, as a run stopped part way does.
template <class E>
[[noreturn]] void raise_with_rows(E e, std::int64_t rows) {
  if (rows > 0) {
    auto r = std::make_shared<RunReport>();
    r->backend = "test";
    r->finished_rows.emplace_back(0, rows);
    e.set_partial_report(std::move(r));
  }
  throw e;
}

void raise_error(const std::string& code, const std::string& message, std::int64_t rows) {
  if (code == "invalid_argument") raise_with_rows(InvalidArgument(message), rows);
  if (code == "unsupported") raise_with_rows(Unsupported(message), rows);
  if (code == "out_of_memory") raise_with_rows(OutOfMemory(message), rows);
  if (code == "backend") raise_with_rows(BackendError(message), rows);
  if (code == "io") raise_with_rows(IoError(message), rows);
  if (code == "cancelled") {
    RunReport r;
    r.backend = "test";
    if (rows > 0) r.finished_rows.emplace_back(0, rows);
    throw Cancelled(message, std::move(r));
  }
  throw InvalidArgument("[longattn._core._raise_error] code = '" + code + "' is not an ErrorCode");
}

nb::dict default_policy() {
  const Policy p = AttentionOptions::default_policy();
  nb::dict d;
  d["budget_ms"] = p.budget_ms;
  d["safety"] = p.safety;
  d["chunk_threshold_keys"] = p.chunk_threshold_keys;
  d["workspace_limit_bytes"] = p.workspace_limit_bytes;
  d["fixed_chunk_keys"] = p.fixed_chunk_keys;
  d["fixed_query_rows"] = p.fixed_query_rows;
  return d;
}

}  // namespace

}  // namespace longattn::py

NB_MODULE(_core, m) {
  using namespace longattn::py;
  m.doc() =
      "Native core of longattn: array views in, the C++ API called with the GIL\n"
      "released. Use the functions of the `longattn` package; these take\n"
      "already-allocated outputs and flat options.";
  register_error_translator();
  bind_device_profile(m);

  nb::class_<CallOptions>(m, "Options",
                          "The checked options of a call (longattn._api builds them):\n"
                          "the layout, causal mask, window, scale, softcap, policy, profile and\n"
                          "threads.")
      .def(nb::new_(&make_options), nb::kw_only(), "bshd"_a, "causal"_a, "causal_top_left"_a,
           "scale"_a.none(), "budget_ms"_a, "safety"_a, "chunk_threshold_keys"_a,
           "workspace_limit_bytes"_a, "fixed_chunk_keys"_a, "fixed_query_rows"_a,
           "profile"_a.none(), "threads"_a, "window_left"_a = -1, "window_right"_a = -1,
           "softcap"_a = 0.0)
      .def_prop_ro("bshd", [](const CallOptions& o) { return o.bshd; });
  m.def("attention", &attention, "q"_a, "k"_a, "v"_a, "out"_a.none(), "lse"_a.none(),
        "mask"_a.none(), "sinks"_a.none(), "options"_a, "stream"_a, "progress"_a.none(), "report"_a,
        "Runs longattn::attention on views of the given arrays, writing out (and\n"
        "lse). Returns the run report when report=True, else None.");
  m.def("plan", &plan, "q"_a, "k"_a, "v"_a, "out"_a.none(), "lse"_a, "mask"_a.none(),
        "sinks"_a.none(), "options"_a,
        "The plan longattn::attention would run (longattn::plan_attention).");
  m.def("merge_states", &merge, "parts"_a, "out"_a.none(), "out_lse"_a.none(), nb::kw_only(),
        "bshd"_a, "threads"_a, "longattn::merge_states on views of the given arrays.");
  m.def(
      "default_profile",
      [](const std::string& backend) { return longattn::default_profile(parse_backend(backend)); },
      "backend"_a = "cpu", "A copy of the process-wide profile of a backend ('cpu' or 'cuda').");
  m.def("default_policy", &default_policy,
        "The fields of AttentionOptions::default_policy() as a dict.");
  m.def("cuda_built", &cuda_built, "Whether this build has the CUDA backend.");
  m.def("_synchronize_stream", &synchronize_stream, "stream"_a,
        "Waits for the work queued on a CUDA stream of the current device (an int\n"
        "cudaStream_t, 0 = the legacy default stream); nothing without CUDA.");
  m.def(
      "attention_flops",
      [](std::int64_t B, std::int64_t Hq, std::int64_t Lq, std::int64_t Lk, std::int64_t D,
         std::int64_t Dv,
         bool causal) { return longattn::attention_flops(B, Hq, Lq, Lk, D, Dv, causal); },
      "B"_a, "Hq"_a, "Lq"_a, "Lk"_a, "D"_a, "Dv"_a, "causal"_a = false,
      "FLOPs of one attention call without a mask array: 2 * (D + Dv) per\n"
      "(batch, query head) and visible (query, key) pair (the two matrix\n"
      "products); causal bottom-right aligned. The count behind every TFLOP/s\n"
      "figure of longattn's reports and benchmarks.");
  m.def("_raise_error", &raise_error, "code"_a, "message"_a, "rows"_a = 0,
        "Tests only: raises the C++ error of `code` (error.hpp's ErrorCode names).");
}
