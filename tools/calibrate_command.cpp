// `longattn calibrate`: measures a DeviceProfile (longattn::calibrate, which
// says how) and saves it.
#include <fmt/format.h>
#include <fmt/ostream.h>

#include <ostream>

#include "atomic_file.hpp"
#include "commands.hpp"
#include "longattn/calibrate.hpp"
#include "messages.hpp"
#include "output_paths.hpp"

namespace longattn::cli {

int calibrate_command(const CalibrateArgs& a, std::ostream& out, std::ostream& /*err*/) {
  if (a.reps < 1) throw UsageError("--reps must be at least 1");
  if (a.dtypes.empty() || a.head_dims.empty())
    throw UsageError("--dtypes and --head-dims need a value");
  check_paths({{"--out", a.out_path}}, {});
  const Device device = resolve_device(a.device);
  CalibrateOptions c;
  c.backend = device == Device::cuda ? BackendKind::cuda : BackendKind::cpu;
  c.dtypes.clear();
  for (const auto& s : a.dtypes) c.dtypes.push_back(parse_dtype(s));
  c.head_dims = a.head_dims;
  c.heads = a.heads;
  c.q_len = a.q_len;
  c.k_len = a.k_len;
  c.reps = a.reps;
  c.threads = a.threads;
  bool started = false;
  c.log = [&](const std::string& line) {
    started = true;
    fmt::print(out, "{}\n", line);
  };
  DeviceProfile prof;
  try {
    prof = calibrate(c);
  } catch (const Error& e) {
    // Options the library refuses before measuring anything (a head dim or
    // dtype the backend does not serve, a size out of range) are the
    // caller's: a usage error in the flags' terms.
    const bool usage =
        e.code() == ErrorCode::invalid_argument || e.code() == ErrorCode::unsupported;
    if (!started && usage) {
      std::string m = in_flag_terms(e.what(), FieldNames::policy);
      for (auto [field, flag] : {std::pair{"head_dims", "--head-dims"},
                                 {"dtypes", "--dtypes"},
                                 {"q_len", "--q-len"},
                                 {"k_len", "--k-len"},
                                 {"heads", "--heads"}})
        for (auto at = m.find(field); at != std::string::npos; at = m.find(field, at + 1))
          if (at == 0 || m[at - 1] == ' ') m.replace(at, std::string(field).size(), flag);
      throw UsageError(m);
    }
    throw;
  }
  write_atomically(a.out_path, [&](const std::string& tmp) { prof.save(tmp); });
  fmt::print(out, "wrote {}\n", a.out_path);
  return kExitOk;
}

}  // namespace longattn::cli
