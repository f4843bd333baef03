// Command-line parsing shared by the benchmark programs (CLI11).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdlib>

namespace longattn::bench {

// Parses argv into `app`'s options: --help prints and exits 0; a usage
// error prints why and exits 2, as the longattn tool does.
inline void parse_or_exit(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::exit(app.exit(e) == 0 ? 0 : 2);
  }
}

}  // namespace longattn::bench
