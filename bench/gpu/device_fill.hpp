// Device-side inputs and masks for the shapes suites (bench/gpu/shapes.cpp):
// hundreds of MB to GB each, made where they are used. The mask contents
// follow one formula, which bench/gpu/shapes_peers.py computes the same way
// in PyTorch (`mask_rows` there), so longattn and its peers read equal masks.
//
// Row i, column j of an Lq x Lk mask; the diagonal is bottom-right aligned,
// d = j - (i + Lk - Lq) (every suite row is square, where d = j - i):
//   alibi   additive only: -min(|d|, 4096) / 256, in [-16, 0] (float32, then
//           bfloat16 round-to-nearest-even); hides nothing
//   all     every key visible (additive: 0; boolean: true)
//   causal  visible iff d <= 0
//   docs    visible iff (i + Lk - Lq) / doc_len == j / doc_len (integer
//           division): block-diagonal documents of doc_len tokens
// Hidden entries are -inf (additive) or false (boolean); a boolean mask is
// one byte per entry, 1 = keep.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace longattn::bench::gpu {

enum class MaskContent : std::uint8_t { none, alibi, all, causal, docs };

struct MaskFill {
  MaskContent content = MaskContent::none;
  bool boolean = false;  // false: additive bfloat16
  std::int64_t Lq = 0, Lk = 0;
  std::int64_t doc_len = 0;  // docs only, > 0
};

#ifdef __CUDACC__
#define LONGATTN_BENCH_HD __host__ __device__
#else
#define LONGATTN_BENCH_HD
#endif

// Entry (i, j) of the mask `f`: the additive value (0, -inf or the ALiBi
// bias), or for a boolean mask 1 (keep) or 0. Host and device code, so the
// host can check what the device writes.
inline LONGATTN_BENCH_HD float mask_value(const MaskFill& f, std::int64_t i, std::int64_t j) {
  const std::int64_t diag = i + f.Lk - f.Lq;
  bool keep = true;
  if (f.content == MaskContent::causal) keep = j <= diag;
  if (f.content == MaskContent::docs) keep = diag / f.doc_len == j / f.doc_len;
  if (f.boolean) return keep ? 1.0f : 0.0f;
  if (f.content == MaskContent::alibi) {
    const std::int64_t d = j >= diag ? j - diag : diag - j;
    return -static_cast<float>(d < 4096 ? d : 4096) / 256.0f;
  }
  return keep ? 0.0f : -__builtin_huge_valf();
}

// Writes the Lq x Lk mask `f` to p (contiguous rows of Lk; boolean: one
// byte an entry, additive: bfloat16 rounded to nearest even), on the
// default stream.
cudaError_t fill_mask(void* p, const MaskFill& f);

// p[i] uniform in [-2, 2) rounded to bfloat16, i < n, from (seed, i) only.
cudaError_t fill_uniform_bf16(void* p, std::uint64_t n, std::uint64_t seed);

}  // namespace longattn::bench::gpu
