// See split_k.hpp.
#include "cuda/split_k.hpp"

#include <algorithm>

#include "core/int_math.hpp"

namespace longattn::cuda {

using core::ceil_div;

double wave_fill(std::int64_t blocks, std::int64_t slots) {
  return static_cast<double>(blocks) / static_cast<double>(ceil_div(blocks, slots) * slots);
}

std::int64_t vector_splits(std::int64_t base, std::int64_t steps, std::int64_t min_steps,
                           std::int64_t slots, std::int64_t max_splits) {
  base = std::max<std::int64_t>(1, base);
  const std::int64_t most =
      std::min({max_splits, steps / std::max<std::int64_t>(1, min_steps), 4 * slots / base});
  auto fill = [&](std::int64_t s) { return wave_fill(base * s, slots); };
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

std::int64_t tile_splits(const TileGrid& g) {
  std::int64_t splits = 1;
  const std::int64_t target = (g.one_wave ? 1 : 2) * g.sms;
  if (g.base < target && g.units >= 2 * g.min_units) {
    const std::int64_t want =
        g.one_wave ? std::max<std::int64_t>(1, target / g.base) : ceil_div(target, g.base);
    splits = std::max<std::int64_t>(1, std::min({want, g.units / g.min_units, g.max_splits}));
  }
  if (splits == 1 && g.uniform && g.resident > 0 && g.base >= g.resident &&
      g.units >= 4 * g.min_units) {
    auto fill = [&](std::int64_t s) { return wave_fill(g.base * s, g.resident); };
    for (std::int64_t s = 2; s <= 4; ++s)
      if (g.units / s >= g.min_units && s <= g.max_splits && fill(s) > fill(splits) + 0.05)
        splits = s;
  }
  return splits;
}

}  // namespace longattn::cuda
