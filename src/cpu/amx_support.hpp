// Whether this process may run the AMX build of the CPU kernel, and if not,
// why: the CPU (CPUID AMX-TILE and AMX-BF16), the OS (XCR0 enables the tile
// state) and Linux's per-process permission for the tile data
// (arch_prctl ARCH_REQ_XCOMP_PERM), requested on the first call only.
#pragma once

#include <string>

namespace longattn::cpu {

struct AmxSupport {
  bool usable = false;
  std::string why_not;  // empty when usable: "this CPU has no AMX-TILE ...", ...
};

// Thread-safe; probes (and asks Linux for the permission) once per process.
const AmxSupport& amx_support();

}  // namespace longattn::cpu
