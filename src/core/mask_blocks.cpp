// The mask's block summary on the host, and the planner's counts of it.
#include "core/mask_blocks.hpp"

#include <algorithm>
#include <cmath>

#include "core/half.hpp"

namespace longattn::core {

std::vector<std::uint8_t> summarize_mask_host(const Problem& p) {
  const BlockDims d = block_dims(p);
  std::vector<std::uint8_t> out(static_cast<std::size_t>(d.nb * d.nh * d.nq * d.nk));
  const bool boolean = p.mask_kind == MaskKind::boolean;
  const auto* bits = static_cast<const std::uint8_t*>(p.mask);
#pragma omp parallel for schedule(dynamic)
  for (std::int64_t row = 0; row < d.nb * d.nh * d.nq; ++row) {
    const std::int64_t b = row / (d.nh * d.nq), h = row / d.nq % d.nh, qb = row % d.nq;
    const std::int64_t q0 = qb * kMaskBlock, q1 = std::min(p.Lq, q0 + kMaskBlock);
    for (std::int64_t kb = 0; kb < d.nk; ++kb) {
      const std::int64_t k0 = kb * kMaskBlock, k1 = std::min(p.Lk, k0 + kMaskBlock);
      // A boolean block is never finite: a false is -inf.
      bool any_shown = false, all_open = true, all_finite = !boolean;
      for (std::int64_t q = q0; q < q1; ++q) {
        const std::int64_t base =
            b * p.mask_stride[0] + h * p.mask_stride[1] + q * p.mask_stride[2];
        for (std::int64_t j = k0; j < k1; ++j) {
          const std::int64_t at = base + j * p.mask_stride[3];
          if (boolean) {
            const bool keep = bits[at] != 0;
            any_shown |= keep;
            all_open &= keep;
          } else {
            const float x = load_as_float(p.mask, at, p.mask_dtype);
            any_shown |= !(x == -INFINITY);  // NaN counts as shown
            all_open &= x == 0.f;
            all_finite &= std::isfinite(x);
          }
        }
      }
      const BlockKind k = all_open     ? BlockKind::open
                          : all_finite ? BlockKind::finite
                          : any_shown  ? BlockKind::partial
                                       : BlockKind::hidden;
      out[static_cast<std::size_t>(row * d.nk + kb)] = static_cast<std::uint8_t>(k);
    }
  }
  return out;
}

MaskCost mask_cost(const Problem& p, const std::vector<std::uint8_t>& blocks) {
  const BlockDims d = block_dims(p);
  MaskCost c;
  c.nq = d.nq;
  c.nk = d.nk;
  c.slices = d.nb * d.nh;
  c.prefix.assign(static_cast<std::size_t>(d.nq * (d.nk + 1)), 0);
  for (std::int64_t s = 0; s < c.slices; ++s)
    for (std::int64_t qb = 0; qb < d.nq; ++qb) {
      const std::uint8_t* row = blocks.data() + (s * d.nq + qb) * d.nk;
      std::int32_t* pre = c.prefix.data() + qb * (d.nk + 1);
      std::int32_t run = 0;
      for (std::int64_t kb = 0; kb < d.nk; ++kb) {
        run += row[kb] != static_cast<std::uint8_t>(BlockKind::hidden);
        pre[kb + 1] += run;
      }
    }
  return c;
}

double MaskCost::shown(std::int64_t qb, std::int64_t kb0, std::int64_t kb1) const {
  kb0 = std::clamp<std::int64_t>(kb0, 0, nk);
  kb1 = std::clamp<std::int64_t>(kb1, kb0, nk);
  if (kb1 == kb0 || qb < 0 || qb >= nq) return 1;
  const std::int32_t* pre = prefix.data() + qb * (nk + 1);
  return static_cast<double>(pre[kb1] - pre[kb0]) / static_cast<double>(slices * (kb1 - kb0));
}

void attach_blocks(Problem& p, const std::uint8_t* blocks) {
  const BlockDims d = block_dims(p);
  p.mask_blocks = blocks;
  p.mb_stride[2] = d.nk;
  p.mb_stride[1] = d.nh > 1 ? d.nq * d.nk : 0;
  p.mb_stride[0] = d.nb > 1 ? d.nh * d.nq * d.nk : 0;
}

}  // namespace longattn::core
