// Compiled only with -DLONGATTN_PLANT_FAULTS=ON (see faults.hpp).
#include "core/faults.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace longattn::core {
namespace {

Fault read_fault() {
  const char* s = std::getenv("LONGATTN_PLANT_FAULT");
  if (s == nullptr || *s == '\0') return Fault::none;
  struct Named {
    const char* name;
    Fault fault;
  };
  constexpr Named kFaults[] = {{"drop_chunk", Fault::drop_chunk},
                               {"zero_row", Fault::zero_row},
                               {"swap_heads", Fault::swap_heads},
                               {"shift_diagonal", Fault::shift_diagonal}};
  for (const Named& n : kFaults)
    if (std::strcmp(s, n.name) == 0) return n.fault;
  std::fprintf(stderr,
               "[longattn] LONGATTN_PLANT_FAULT = \"%s\" names no fault (drop_chunk, zero_row, "
               "swap_heads, shift_diagonal, or empty for none)\n",
               s);
  std::abort();
}

}  // namespace

bool planted(Fault f) {
  static const Fault active = read_fault();
  return f != Fault::none && f == active;
}

}  // namespace longattn::core
