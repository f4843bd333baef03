// The portable build of the CPU kernel (see kernel_impl.hpp), for processors
// without AVX2/FMA/F16C and for non-x86 targets.
#define LONGATTN_KERNEL_NS generic_impl
#define LONGATTN_KERNEL_ENTRY run_rect
#include "cpu/kernel_impl.hpp"

namespace longattn::cpu {
void run_rect_generic(const core::Problem& p, const Rect& r, Mode mode, const core::StateView& st,
                      int threads, std::shared_ptr<void>& scratch) {
  generic_impl::run_rect(p, r, mode, st, threads, scratch);
}
}  // namespace longattn::cpu
