#include "output_paths.hpp"

#include <algorithm>
#include <filesystem>

#include "atomic_file.hpp"
#include "commands.hpp"

namespace fs = std::filesystem;

namespace longattn::cli {
namespace {

bool same_file(const std::string& a, const std::string& b) {
  std::error_code ec;
  if (fs::exists(a, ec) && fs::exists(b, ec)) return fs::equivalent(a, b, ec);
  // weakly_canonical resolves what exists of the path (the directory) and
  // appends the rest, so "x.npy" and "./d/../x.npy" compare equal.
  const fs::path ca = fs::weakly_canonical(fs::absolute(a), ec);
  const fs::path cb = fs::weakly_canonical(fs::absolute(b), ec);
  return ca == cb;
}

}  // namespace

void check_paths(const std::vector<PathArg>& outputs, const std::vector<PathArg>& inputs,
                 const std::vector<std::pair<std::string, std::string>>& may_overwrite) {
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    const PathArg& o = outputs[i];
    if (o.path.empty()) continue;
    for (std::size_t j = 0; j < i; ++j)
      if (!outputs[j].path.empty() && same_file(o.path, outputs[j].path))
        throw UsageError(outputs[j].flag + " and " + o.flag + " both name " + o.path +
                         "; give each output its own file");
    for (const PathArg& in : inputs) {
      const bool allowed = std::find(may_overwrite.begin(), may_overwrite.end(),
                                     std::pair{o.flag, in.flag}) != may_overwrite.end();
      if (!in.path.empty() && !allowed && same_file(o.path, in.path))
        throw UsageError(o.flag + " " + o.path + " is also the input " + in.flag +
                         "; write the output to another file");
    }
  }
  for (const PathArg& o : outputs)
    if (!o.path.empty()) check_writable(o.path, o.flag);
}

}  // namespace longattn::cli
