// The AVX-512 + AVX512-BF16 build of the CPU kernel (see kernel_impl.hpp):
// the AVX-512 build, plus vdpbf16ps products for bfloat16 inputs.
#define LONGATTN_KERNEL_NS avx512bf16_impl
#define LONGATTN_KERNEL_ENTRY run_rect
#include "cpu/kernel_impl.hpp"

namespace longattn::cpu {
void run_rect_avx512bf16(const core::Problem& p, const Rect& r, Mode mode,
                         const core::StateView& st, int threads, std::shared_ptr<void>& scratch) {
  avx512bf16_impl::run_rect(p, r, mode, st, threads, scratch);
}
}  // namespace longattn::cpu
