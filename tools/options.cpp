// Turning option values into library types, shared by the subcommands.
#include <cmath>
#include <filesystem>

#include "commands.hpp"
#include "messages.hpp"

namespace longattn::cli {

Policy PolicyArgs::policy() const {
  Policy p = AttentionOptions::default_policy();
  p.budget_ms = budget_ms;
  p.safety = safety;
  p.fixed_chunk_keys = chunk_keys;
  p.fixed_query_rows = query_rows;
  p.chunk_threshold_keys = chunk_threshold;
  p.workspace_limit_bytes = static_cast<std::int64_t>(std::llround(workspace_mb * 1024 * 1024));
  return p;
}

Device resolve_device(DeviceOption d) {
  std::string why;
  switch (d) {
    case DeviceOption::cpu:
      return Device::cpu;
    case DeviceOption::cuda:
      if (!cuda_device_present(&why)) throw UsageError("--device cuda: " + why);
      return Device::cuda;
    case DeviceOption::automatic:
      return cuda_device_present() ? Device::cuda : Device::cpu;
  }
  throw UsageError("--device: unknown value");
}

std::optional<DeviceProfile> load_profile(const std::string& path) {
  if (path.empty()) return std::nullopt;
  // A directory reaches the JSON reader as a stream error that names no file.
  if (std::filesystem::is_directory(path))
    throw IoError("--profile " + path + ": is a directory, not a profile file");
  try {
    return DeviceProfile::load(path);
  } catch (const std::exception& e) {
    // The library says "path = 'p.json'"; the user typed --profile p.json.
    std::string m = without_prefix(e.what());
    const std::string field = "path = '" + path + "'";
    if (const auto at = m.find(field); at != std::string::npos)
      m.replace(at, field.size(), "--profile " + path);
    else
      m = "--profile " + path + ": " + m;
    throw IoError(m);
  }
}

DType parse_dtype(const std::string& s) {
  if (s == "f32" || s == "float32") return DType::float32;
  if (s == "f16" || s == "float16") return DType::float16;
  if (s == "bf16" || s == "bfloat16") return DType::bfloat16;
  throw UsageError("--dtype " + s + ": expected f32, f16 or bf16");
}

}  // namespace longattn::cli
