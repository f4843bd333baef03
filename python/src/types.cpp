// DeviceProfile, the one C++ object Python holds by reference: a call given
// a profile plans with it and refines it in place (attention.hpp). Plans and
// reports are plain Python objects instead (report.hpp).
#include "types.hpp"

#include <nanobind/nanobind.h>
#include <nanobind/stl/function.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <sstream>

#include "longattn/attention.hpp"
#include "longattn/calibrate.hpp"

namespace longattn::py {
namespace {

using namespace nb::literals;

DType parse_dtype(const std::string& name) {
  if (name == "float32") return DType::float32;
  if (name == "float16") return DType::float16;
  if (name == "bfloat16") return DType::bfloat16;
  throw InvalidArgument("[longattn.DeviceProfile.rate_key] dtype = '" + name +
                        "' must be 'float32', 'float16' or 'bfloat16'");
}

nb::object rates_view(const DeviceProfile& p) {
  nb::dict d;
  for (const auto& [key, gflops] : p.gflops) d[nb::str(key.c_str(), key.size())] = gflops;
  return nb::module_::import_("types").attr("MappingProxyType")(d);
}

void set_rates(DeviceProfile& p, const nb::handle& mapping) {
  // Any mapping (a dict, the read-only view the getter returns, ...).
  const nb::object d = nb::module_::import_("builtins").attr("dict")(mapping);
  p.gflops = nb::cast<std::map<std::string, double>>(d);
}

std::string repr(const DeviceProfile& p) {
  std::ostringstream s;
  s << "DeviceProfile(backend='" << p.backend << "', device_name='" << p.device_name
    << "', gflops={";
  const char* sep = "";
  for (const auto& [key, g] : p.gflops) {
    s << sep << "'" << key << "': " << g;
    sep = ", ";
  }
  s << "}, default_gflops=" << p.default_gflops
    << ", dispatch_overhead_ms=" << p.dispatch_overhead_ms
    << ", submission_overhead_ms=" << p.submission_overhead_ms << ", state_gbps=" << p.state_gbps
    << ", fill_rows=" << p.fill_rows << ", query_tile=" << p.query_tile
    << ", key_tile=" << p.key_tile << ", samples=" << p.samples << ")";
  return s.str();
}

BackendKind calibrate_backend(const std::string& name) {
  if (name == "auto") return BackendKind::automatic;
  if (name == "cpu") return BackendKind::cpu;
  if (name == "cuda") return BackendKind::cuda;
  throw InvalidArgument("[longattn.DeviceProfile.calibrate] backend = '" + name +
                        "' must be 'auto', 'cpu' or 'cuda'");
}

// calibrate() with the GIL released while it measures; `log` (a Python
// callable) takes it back for each line.
DeviceProfile calibrate(const std::string& backend, const std::vector<std::string>& dtypes,
                        const std::vector<std::int64_t>& head_dims, std::int64_t heads,
                        std::int64_t q_len, std::int64_t k_len, int reps, int threads,
                        nb::object log) {
  CalibrateOptions c;
  c.backend = calibrate_backend(backend);
  c.dtypes.clear();
  for (const auto& d : dtypes) {
    if (d != "float32" && d != "float16" && d != "bfloat16")
      throw InvalidArgument("[longattn.DeviceProfile.calibrate] dtypes: '" + d +
                            "' must be 'float32', 'float16' or 'bfloat16'");
    c.dtypes.push_back(parse_dtype(d));
  }
  c.head_dims = head_dims;
  c.heads = heads;
  c.q_len = q_len;
  c.k_len = k_len;
  c.reps = reps;
  c.threads = threads;
  if (!log.is_none())
    c.log = [log](const std::string& line) {
      nb::gil_scoped_acquire hold;
      log(line);
    };
  nb::gil_scoped_release free;
  return longattn::calibrate(c);
}

}  // namespace

void bind_device_profile(nb::module_& m) {
  nb::class_<DeviceProfile>(
      m, "DeviceProfile",
      "Measured speed of one backend on this machine: what the planner sizes\n"
      "submissions from.\n\n"
      "Rates (GFLOP/s) are keyed by 'dtype/d<head_dim>/<causal|full|masked>'\n"
      "(see rate_key); a missing key falls back to the dtype's entry\n"
      "('bfloat16'), then to default_gflops. Times are in milliseconds.\n\n"
      "Pass one to attention(profile=...) to plan with it; the call refines it\n"
      "in place from what it measured (do not share one object between threads\n"
      "running at the same time). Without one, calls use and refine the\n"
      "process-wide profile of their backend (default_profile()). save() and\n"
      "load() keep one across processes (the JSON of `longattn calibrate`).")
      .def(nb::init<>(), "A profile with the C++ defaults (not measured).")
      .def_rw("backend", &DeviceProfile::backend, "'cpu' or 'cuda'.")
      .def_rw("device_name", &DeviceProfile::device_name, "Human-readable, for reports.")
      .def_prop_rw(
          "gflops", [](const DeviceProfile& p) { return rates_view(p); },
          [](DeviceProfile& p, nb::handle mapping) { set_rates(p, mapping); },
          nb::for_getter(nb::sig("def gflops(self, /) -> typing.Mapping[str, float]")),
          nb::for_setter(nb::sig("def gflops(self, value: typing.Mapping[str, float], /) -> None")),
          "Achieved GFLOP/s per rate key: a read-only snapshot. Assign a whole\n"
          "mapping to change it (profile.gflops = {**profile.gflops, key: value}).")
      .def_rw("default_gflops", &DeviceProfile::default_gflops, "Rate used when no key matches.")
      .def_rw("dispatch_overhead_ms", &DeviceProfile::dispatch_overhead_ms,
              "Fixed cost per dispatch.")
      .def_rw("submission_overhead_ms", &DeviceProfile::submission_overhead_ms,
              "Fixed cost per submission (commit + wait).")
      .def_rw("state_gbps", &DeviceProfile::state_gbps, "Running-state read/write bandwidth, GB/s.")
      .def_rw("fill_rows", &DeviceProfile::fill_rows,
              "Rows (B * Hq * queries) needed to keep the device busy.")
      .def_rw("query_tile", &DeviceProfile::query_tile,
              "The kernel's query tile: query-group heights round to it.")
      .def_rw("key_tile", &DeviceProfile::key_tile,
              "The kernel's key tile: chunk lengths round to it.")
      .def_rw("samples", &DeviceProfile::samples, "How many measurements refined it.")
      .def_static(
          "rate_key",
          [](const std::string& dtype, std::int64_t head_dim, bool causal, bool masked) {
            return DeviceProfile::rate_key(parse_dtype(dtype), head_dim, causal, masked);
          },
          "dtype"_a, "head_dim"_a, "causal"_a = false, "masked"_a = false,
          "The rate key of a problem, e.g. rate_key('bfloat16', 128, causal=True)\n"
          "== 'bfloat16/d128/causal'. dtype: 'float32', 'float16' or 'bfloat16'.")
      .def("rate_gflops", &DeviceProfile::rate_gflops, "key"_a,
           "The rate the planner uses for `key`, after the fallbacks.")
      .def("invalid_field", &DeviceProfile::invalid_field,
           "'' when every field is in range, else the first that is not\n"
           "(e.g. 'fill_rows = 1e+10 must be in [1, 16777216]').")
      .def("save", &DeviceProfile::save, "path"_a,
           "Writes the profile as a small JSON file. Raises longattn.IoError\n"
           "naming the path on failure, InvalidArgument for a profile load()\n"
           "would refuse.")
      .def_static("load", &DeviceProfile::load, "path"_a,
                  "Reads a profile written by save() or `longattn calibrate`.\n"
                  "Raises longattn.IoError or InvalidArgument naming the path.")
      .def_static("calibrate", &calibrate, nb::kw_only(), "backend"_a = "auto",
                  "dtypes"_a = std::vector<std::string>{"float32", "float16", "bfloat16"},
                  "head_dims"_a = std::vector<std::int64_t>{64, 128}, "heads"_a = 8,
                  "q_len"_a = 1024, "k_len"_a = 1024, "reps"_a = 3, "threads"_a = 0,
                  "log"_a = nb::none(),
                  "Measures a profile of this machine's backend from attention calls\n"
                  "on generated inputs (what `longattn calibrate` does): the fixed\n"
                  "costs per dispatch and submission, a rate per (dtype, head dim)\n"
                  "for full, causal and masked problems of heads x q_len x k_len, and\n"
                  "the running state's bandwidth. Takes seconds to a minute.\n\n"
                  "backend: 'auto' (CUDA when available), 'cpu' or 'cuda'. reps:\n"
                  "timed runs after a warm-up (the median counts). threads: CPU\n"
                  "threads, 0 = all. log: optional callable taking each progress\n"
                  "line. Returns the profile; save() it and pass it as\n"
                  "attention(profile=...). Raises InvalidArgument for bad options and\n"
                  "Unsupported for a dtype or head dim the backend does not serve.")
      .def("__copy__", [](const DeviceProfile& p) { return p; })
      .def(
          "__deepcopy__", [](const DeviceProfile& p, nb::handle) { return p; }, "memo"_a)
      .def("__repr__", &repr);
}

}  // namespace longattn::py
