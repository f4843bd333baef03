// The CPU attention kernel: one rectangle [q0,q1) x [k0,k1) in one mode, for
// every (batch, head), on `threads` OpenMP threads. Five builds of the same
// source (kernel_impl.hpp): AMX tiles, AVX-512 with BF16 dot products,
// AVX-512, AVX2+FMA+F16C and portable, chosen at run time.
#pragma once

#include <memory>

#include "core/backend.hpp"

namespace longattn::cpu {

// `scratch`: the caller's cache of the build's per-thread scratch memory,
// kept across the dispatches of one call (empty at first; the build fills
// it, and it is freed with the last copy of the pointer). Allocating it per
// dispatch faulted its pages in anew each time: some 500 KB a thread at
// D = 128, against a 10 ms dispatch.
void run_rect_amx(const core::Problem& p, const Rect& r, Mode mode, const core::StateView& st,
                  int threads, std::shared_ptr<void>& scratch);
void run_rect_avx512bf16(const core::Problem& p, const Rect& r, Mode mode,
                         const core::StateView& st, int threads, std::shared_ptr<void>& scratch);
void run_rect_avx512(const core::Problem& p, const Rect& r, Mode mode, const core::StateView& st,
                     int threads, std::shared_ptr<void>& scratch);
void run_rect_avx2(const core::Problem& p, const Rect& r, Mode mode, const core::StateView& st,
                   int threads, std::shared_ptr<void>& scratch);
void run_rect_generic(const core::Problem& p, const Rect& r, Mode mode, const core::StateView& st,
                      int threads, std::shared_ptr<void>& scratch);

// Rows of one work item: the query heads of one KV head times a run of
// queries, so that K and V are packed once for all heads that read them.
inline constexpr int kRowTarget = 192;
// Keys per tile of the AVX2 and portable builds (the AVX-512 ones take
// 128: kernel_simd.hpp).
inline constexpr int kKeyTile = 64;

}  // namespace longattn::cpu
