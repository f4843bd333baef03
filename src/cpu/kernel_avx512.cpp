// The AVX-512 build of the CPU kernel (see kernel_impl.hpp): F, BW, DQ and
// VL (with FMA and F16C), the set every AVX-512 x86 CPU since Skylake-SP has.
#define LONGATTN_KERNEL_NS avx512_impl
#define LONGATTN_KERNEL_ENTRY run_rect
#include "cpu/kernel_impl.hpp"

namespace longattn::cpu {
void run_rect_avx512(const core::Problem& p, const Rect& r, Mode mode, const core::StateView& st,
                     int threads, std::shared_ptr<void>& scratch) {
  avx512_impl::run_rect(p, r, mode, st, threads, scratch);
}
}  // namespace longattn::cpu
