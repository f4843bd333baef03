// The longattn program. All of it lives in longattn_cli_lib (cli.cpp) so
// that tests run it in-process with their own streams.
#include <iostream>

#include "commands.hpp"

int main(int argc, char** argv) { return longattn::cli::main(argc, argv, std::cout, std::cerr); }
