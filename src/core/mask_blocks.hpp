// The block summary of an array mask, in the spirit of FlexAttention's block
// masks: each 64 x 64 block of (query, key) pairs of each mask slice (b, h)
// is hidden (every pair masked out: false, or -inf), open (every pair kept
// with nothing added: true, or exactly 0), finite (every pair kept, an
// additive term finite everywhere and not zero everywhere) or partial
// (anything else, NaN included, so that a block is skipped only where that
// cannot change a result). Finite blocks are partial ones that the Hopper
// kernel may add by tensor-core product (no -inf that a zero weight would
// turn into NaN); to everything else they are partial. Computed once per
// call by the backend where the mask lives (Backend::summarize_mask), it
// lets the kernels skip hidden tiles and leave open ones unread, and the
// planner cost a rectangle by the blocks it shows (MaskCost), so a band or
// block-diagonal mask costs time in proportion to what it shows.
#pragma once

#include <cstdint>
#include <vector>

#include "core/problem.hpp"

namespace longattn::core {

constexpr std::int64_t kMaskBlock = 64;

enum class BlockKind : std::uint8_t { hidden = 0, partial = 1, open = 2, finite = 3 };
// Every kind's bit (block_kinds without a summary).
constexpr unsigned kEveryBlockKind = 0xfu;

// Summary dims of a problem's mask: [slices_b, slices_h, q_blocks, k_blocks],
// one slice per batch / head only where the mask does not broadcast.
struct BlockDims {
  std::int64_t nb, nh, nq, nk;
};
LONGATTN_HD BlockDims block_dims(const Problem& p) {
  return {p.mask_stride[0] != 0 ? p.B : 1, p.mask_stride[1] != 0 ? p.Hq : 1,
          (p.Lq + kMaskBlock - 1) / kMaskBlock, (p.Lk + kMaskBlock - 1) / kMaskBlock};
}

// The kinds present among the blocks holding rows [q0, q1) x keys [k0, k1)
// of heads [h0, h1) of batch b, as bits (1 << BlockKind); every kind when
// the problem carries no summary (nothing may be skipped then).
LONGATTN_HD unsigned block_kinds(const Problem& p, std::int64_t b, std::int64_t h0, std::int64_t h1,
                                 std::int64_t q0, std::int64_t q1, std::int64_t k0,
                                 std::int64_t k1) {
  if (p.mask_blocks == nullptr) return kEveryBlockKind;
  if (q1 <= q0 || k1 <= k0) return 0u;
  if (p.mb_stride[1] == 0) h1 = h0 + 1;  // one slice serves every head
  const std::int64_t qb1 = (q1 - 1) / kMaskBlock, kb1 = (k1 - 1) / kMaskBlock;
  unsigned kinds = 0;
  for (std::int64_t h = h0; h < h1; ++h)
    for (std::int64_t qb = q0 / kMaskBlock; qb <= qb1; ++qb) {
      const std::uint8_t* row =
          p.mask_blocks + b * p.mb_stride[0] + h * p.mb_stride[1] + qb * p.mb_stride[2];
      for (std::int64_t kb = k0 / kMaskBlock; kb <= kb1; ++kb) kinds |= 1u << row[kb];
    }
  return kinds;
}
// Every pair of the region is hidden by the mask (a tile to skip).
LONGATTN_HD bool mask_hides(const Problem& p, std::int64_t b, std::int64_t h0, std::int64_t h1,
                            std::int64_t q0, std::int64_t q1, std::int64_t k0, std::int64_t k1) {
  return block_kinds(p, b, h0, h1, q0, q1, k0, k1) ==
         1u << static_cast<unsigned>(BlockKind::hidden);
}
// Every pair of the region is kept with nothing added (a tile whose mask
// need not be read).
LONGATTN_HD bool mask_opens(const Problem& p, std::int64_t b, std::int64_t h0, std::int64_t h1,
                            std::int64_t q0, std::int64_t q1, std::int64_t k0, std::int64_t k1) {
  return block_kinds(p, b, h0, h1, q0, q1, k0, k1) == 1u << static_cast<unsigned>(BlockKind::open);
}

// The planner's counts: per query block, prefix sums along the key blocks
// of the number of mask slices in which the block is not hidden.
struct MaskCost {
  std::int64_t nq = 0, nk = 0, slices = 1;
  std::vector<std::int32_t> prefix;  // [nq][nk + 1]
  // The share of pairs in key blocks [kb0, kb1) of query block qb that the
  // mask may show, over every slice (1 for an empty range).
  double shown(std::int64_t qb, std::int64_t kb0, std::int64_t kb1) const;
};

// The summary of a mask in host memory ([nb][nh][nq][nk], block_dims), on
// the calling thread's OpenMP team.
std::vector<std::uint8_t> summarize_mask_host(const Problem& p);
// The planner's counts of a summary (host memory, block_dims layout).
MaskCost mask_cost(const Problem& p, const std::vector<std::uint8_t>& blocks);
// Points p at a summary in the backend's memory, laid out as block_dims.
void attach_blocks(Problem& p, const std::uint8_t* blocks);

}  // namespace longattn::core
