// See split_k.hpp.
#include "cuda/split_k.hpp"

#include <algorithm>

#include "core/int_math.hpp"

namespace longattn::cuda {

using core::ceil_div;

std::int64_t vector_splits(std::int64_t base, std::int64_t steps, std::int64_t min_steps,
                           std::int64_t slots, std::int64_t max_splits) {
  base = std::max<std::int64_t>(1, base);
  const std::int64_t most =
      std::min({max_splits, steps / std::max<std::int64_t>(1, min_steps), 4 * slots / base});
  auto fill = [&](std::int64_t s) {
    const std::int64_t n = base * s;
    return static_cast<double>(n) / static_cast<double>(ceil_div(n, slots) * slots);
  };
  double top = fill(1);
  for (std::int64_t s = 2; s <= most; ++s) top = std::max(top, fill(s));
  std::int64_t best = 1;
  for (std::int64_t waves = 1; waves <= 4; ++waves) {
    const std::int64_t s = std::min(most, waves * slots / base);
    if (s >= 1 && fill(s) >= 0.95 * top) {
      best = s;
      break;
    }
  }
  // Whole steps per split, as the kernel divides them: no split left empty.
  const std::int64_t per = std::max<std::int64_t>(1, ceil_div(steps, best));
  return std::max<std::int64_t>(1, ceil_div(steps, per));
}

}  // namespace longattn::cuda
