// The AVX2 + FMA + F16C build of the CPU kernel (see kernel_impl.hpp).
#define LONGATTN_KERNEL_NS avx2_impl
#define LONGATTN_KERNEL_ENTRY run_rect
#include "cpu/kernel_impl.hpp"

namespace longattn::cpu {
void run_rect_avx2(const core::Problem& p, const Rect& r, Mode mode, const core::StateView& st,
                   int threads, std::shared_ptr<void>& scratch) {
  avx2_impl::run_rect(p, r, mode, st, threads, scratch);
}
}  // namespace longattn::cpu
