// Device profiles: rate lookup and a small JSON file format.
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "longattn/plan.hpp"

namespace longattn {

std::string DeviceProfile::rate_key(DType dtype, std::int64_t head_dim, bool causal, bool masked) {
  return std::string(dtype_name(dtype)) + "/d" + std::to_string(head_dim) + "/" +
         (masked   ? "masked"
          : causal ? "causal"
                   : "full");
}

double DeviceProfile::rate_gflops(const std::string& key) const {
  // Exact key, then the dtype alone ("bfloat16"), then the default.
  auto it = gflops.find(key);
  if (it == gflops.end()) it = gflops.find(key.substr(0, key.find('/')));
  const double r = it != gflops.end() ? it->second : default_gflops;
  return r > 0 ? r : 1.0;  // a zero or negative rate would plan infinite work
}

std::string DeviceProfile::invalid_field() const {
  // Ranges wide enough for any real device (a rate up to 1e9 GFLOP/s, fixed
  // costs up to 10 s), narrow enough that a plan from them stays small:
  // fill_rows of 1e10 once made planning take 20 s.
  std::ostringstream s;
  auto in = [&](double v, const char* name, double lo, double hi, bool lo_open) {
    if (std::isfinite(v) && (lo_open ? v > lo : v >= lo) && v <= hi) return true;
    s << name << " = " << v << " must be in " << (lo_open ? "(" : "[") << lo << ", " << hi << "]";
    return false;
  };
  for (const auto& [k, v] : gflops)
    if (!in(v, ("gflops[\"" + k + "\"]").c_str(), 0, 1e9, true)) return s.str();
  if (in(default_gflops, "default_gflops", 0, 1e9, true) &&
      in(dispatch_overhead_ms, "dispatch_overhead_ms", 0, 1e4, false) &&
      in(submission_overhead_ms, "submission_overhead_ms", 0, 1e4, false) &&
      in(state_gbps, "state_gbps", 0, 1e6, true) &&
      in(static_cast<double>(fill_rows), "fill_rows", 1, 1 << 24, false) &&
      in(static_cast<double>(query_tile), "query_tile", 1, 4096, false) &&
      in(static_cast<double>(key_tile), "key_tile", 1, 4096, false) &&
      in(samples, "samples", 0, 2e9, false))
    return "";
  return s.str();
}

void DeviceProfile::save(const std::string& path) const {
  // A profile load() would refuse is not written (a calibration on a timer
  // too coarse for its problem can measure an impossible rate).
  if (const std::string bad = invalid_field(); !bad.empty())
    throw InvalidArgument("[longattn::DeviceProfile::save] not saving to path = '" + path +
                          "': " + bad);
  nlohmann::json j = {{"format", "longattn-profile-1"},
                      {"backend", backend},
                      {"device_name", device_name},
                      {"gflops", gflops},
                      {"default_gflops", default_gflops},
                      {"dispatch_overhead_ms", dispatch_overhead_ms},
                      {"submission_overhead_ms", submission_overhead_ms},
                      {"state_gbps", state_gbps},
                      {"fill_rows", fill_rows},
                      {"query_tile", query_tile},
                      {"key_tile", key_tile},
                      {"samples", samples}};
  std::ofstream f(path);
  if (!f)
    throw IoError("[longattn::DeviceProfile::save] cannot open path = '" + path + "' for writing");
  f << j.dump(2) << '\n';
  if (!f) throw IoError("[longattn::DeviceProfile::save] write to path = '" + path + "' failed");
}

DeviceProfile DeviceProfile::load(const std::string& path) {
  // A directory opens as a stream on Linux and fails on the first read with
  // a message that names no file; say what it is instead.
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw IoError("[longattn::DeviceProfile::load] path = '" + path + "' is a directory");
  std::ifstream f(path);
  if (!f)
    throw IoError("[longattn::DeviceProfile::load] cannot open path = '" + path +
                  "': " + std::strerror(errno));
  DeviceProfile p;
  try {
    const nlohmann::json j = nlohmann::json::parse(f);
    if (j.value("format", "") != "longattn-profile-1")
      throw IoError("[longattn::DeviceProfile::load] path = '" + path +
                    "' is not a longattn profile (format = '" + j.value("format", "") + "')");
    p.backend = j.at("backend").get<std::string>();
    p.device_name = j.value("device_name", "");
    p.gflops = j.at("gflops").get<std::map<std::string, double>>();
    p.default_gflops = j.at("default_gflops").get<double>();
    p.dispatch_overhead_ms = j.at("dispatch_overhead_ms").get<double>();
    p.submission_overhead_ms = j.at("submission_overhead_ms").get<double>();
    p.state_gbps = j.at("state_gbps").get<double>();
    p.fill_rows = j.at("fill_rows").get<std::int64_t>();
    p.query_tile = j.value("query_tile", p.query_tile);
    p.key_tile = j.value("key_tile", p.key_tile);
    p.samples = j.value("samples", 0);
  } catch (const nlohmann::json::exception& e) {
    throw IoError("[longattn::DeviceProfile::load] path = '" + path +
                  "' is malformed: " + e.what());
  }
  if (const std::string bad = p.invalid_field(); !bad.empty())
    throw IoError("[longattn::DeviceProfile::load] path = '" + path + "': " + bad);
  return p;
}

}  // namespace longattn
