// The longattn program. All of it lives in longattn_cli_lib (cli.cpp) so
// that tests run it in-process with their own streams.
#include <csignal>
#include <iostream>

#include "commands.hpp"

int main(int argc, char** argv) {
  // Past the file size limit (ulimit -f), SIGXFSZ would kill the process in
  // the middle of an output and leave its temporary file behind. Ignored, the
  // write fails with EFBIG instead, and write_atomically removes the
  // temporary file, keeps the previous output and says which file failed.
  std::signal(SIGXFSZ, SIG_IGN);
  return longattn::cli::main(argc, argv, std::cout, std::cerr);
}
