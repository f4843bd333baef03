// The pre-flight check of a command's files, run before any input is read or
// anything computed, so that a bad --report path fails in a second rather
// than after minutes of work, and `--out x.npy --lse x.npy` cannot overwrite
// one result with another.
#pragma once

#include <string>
#include <vector>

namespace longattn::cli {

struct PathArg {
  std::string flag;  // "--out"
  std::string path;  // empty: not given, skipped
};

// Every output is writable (check_writable, IoError: exit 1), and no two
// outputs, nor an output and an input, name the same file (UsageError:
// exit 2). Paths are compared after resolving ".", "..", symbolic links and
// hard links. `may_overwrite` lists (output flag, input flag) pairs that may
// share a file, such as --save-profile refining the --profile it loaded.
void check_paths(const std::vector<PathArg>& outputs, const std::vector<PathArg>& inputs,
                 const std::vector<std::pair<std::string, std::string>>& may_overwrite = {});

}  // namespace longattn::cli
