// The AMX probe (amx_support.hpp). Linux starts every process without the
// right to use the AMX tile data (XFD traps its first use, and the kernel
// kills the process with SIGILL unless it asked first), so the permission
// is requested before the first tile instruction. A refusal (an older
// kernel, a sandbox without the call, a signal stack too small for the
// larger state) makes the path unusable, with the reason, never a crash.
#include "cpu/amx_support.hpp"

#include <cerrno>
#include <cstdint>
#include <cstring>

#if defined(LONGATTN_HAVE_AMX_KERNEL) && !defined(LONGATTN_AMX_EMULATE)
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#endif

namespace longattn::cpu {
namespace {

AmxSupport probe() {
#if !defined(LONGATTN_HAVE_AMX_KERNEL)
  return {false, "this build has no AMX kernel (x86-64 builds only)"};
#elif defined(LONGATTN_AMX_EMULATE)
  return {true, {}};  // the scalar tile model (amx_tiles.hpp): no hardware needed
#else
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || (d & (1u << 24)) == 0 || (d & (1u << 22)) == 0)
    return {false, "this CPU has no AMX-TILE + AMX-BF16 (CPUID leaf 7, EDX bits 24 and 22)"};
  if (!__get_cpuid(1, &a, &b, &c, &d) || (c & (1u << 27)) == 0)
    return {false, "the OS has not enabled XSAVE (CPUID leaf 1, ECX bit 27)"};
  std::uint32_t xcr0 = 0, xcr0_hi = 0;
  __asm__ volatile("xgetbv" : "=a"(xcr0), "=d"(xcr0_hi) : "c"(0));
  constexpr std::uint32_t kTileState = (1u << 17) | (1u << 18);  // XTILECFG, XTILEDATA
  if ((xcr0 & kTileState) != kTileState)
    return {false, "the OS does not enable the AMX tile state (XCR0 bits 17 and 18 clear)"};
#if defined(__linux__)
  constexpr long kArchGetXcompPerm = 0x1022, kArchReqXcompPerm = 0x1023;
  constexpr long kXfeatureXtiledata = 18;
  if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0)
    return {false, std::string("Linux refused arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA): ") +
                       std::strerror(errno)};
  unsigned long granted = 0;
  if (syscall(SYS_arch_prctl, kArchGetXcompPerm, &granted) != 0 ||
      (granted & (1ul << kXfeatureXtiledata)) == 0)
    return {false,
            "Linux accepted arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA) but "
            "ARCH_GET_XCOMP_PERM does not list the tile data"};
  return {true, {}};
#else
  return {false, "the AMX permission is requested on Linux only"};
#endif
#endif
}

}  // namespace

const AmxSupport& amx_support() {
  static const AmxSupport s = probe();  // C++ runs this once, even with threads racing
  return s;
}

}  // namespace longattn::cpu
