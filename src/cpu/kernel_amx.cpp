// The AMX build of the CPU kernel (see kernel_impl.hpp): the AVX512-BF16
// build with its bfloat16 products on AMX tiles (TDPBF16PS, amx_tiles.hpp).
// The scores' softmax and the running state stay on AVX-512. Chosen only
// where the CPU has AMX-TILE and AMX-BF16, the OS enables the tile state
// and Linux grants this process its use (cpu_backend.cpp).
#define LONGATTN_KERNEL_NS amx_impl
#define LONGATTN_KERNEL_ENTRY run_rect
#define LONGATTN_KERNEL_AMX 1
#include "cpu/kernel_impl.hpp"

namespace longattn::cpu {
void run_rect_amx(const core::Problem& p, const Rect& r, Mode mode, const core::StateView& st,
                  int threads, std::shared_ptr<void>& scratch) {
  amx_impl::run_rect(p, r, mode, st, threads, scratch);
}
}  // namespace longattn::cpu
