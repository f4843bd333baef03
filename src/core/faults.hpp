// Planted faults, to prove that the test suite can fail (issue 10): a build
// with -DLONGATTN_PLANT_FAULTS=ON reads LONGATTN_PLANT_FAULT once and breaks
// the library in the one way it names; scripts/test.sh then requires every
// fault to fail the suite. In a normal build planted() is a constexpr false,
// so no fault code is compiled and call sites need no #ifdef.
//
//   drop_chunk      the first key chunk of a chunked run (its first init or
//                   accumulate dispatch) sees no keys (executor.cpp); a
//                   single-pass CPU dispatch skips its last key tile
//   zero_row        the CPU kernel writes zeros for query row 1 (row 0 when
//                   Lq = 1) of batch 0, head 0; its LSE stays right
//   swap_heads      the CPU kernel writes heads 0 and 1 (O and LSE) into each
//                   other's place, when Hq >= 2
//   shift_diagonal  the causal diagonal is one key late: offset Lk - Lq + 1
//                   (validate.cpp), on every backend
#pragma once

namespace longattn::core {

enum class Fault { none, drop_chunk, zero_row, swap_heads, shift_diagonal };

#if defined(LONGATTN_PLANT_FAULTS)
// Whether `f` is the fault LONGATTN_PLANT_FAULT names. Aborts with a message
// on a value that names no fault, so a typo cannot pass as "no fault".
bool planted(Fault f);
#else
constexpr bool planted(Fault) { return false; }
#endif

}  // namespace longattn::core
