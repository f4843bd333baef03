// Split-K sizing: how many key splits a dispatch gets so that its blocks
// fill the GPU in whole waves. Pure functions of the grid, so the CPU tests
// check them.
#pragma once

#include <cstdint>

namespace longattn::cuda {

// The share of `slots` busy over the waves that `blocks` equal blocks take:
// 320 blocks on 264 slots run as two waves, 320 / 528 = 61% busy.
double wave_fill(std::int64_t blocks, std::int64_t slots);

// Split-K of the vector kernel, which is memory-bound: what counts is that
// every SM streams K/V with as many loads in flight as it holds, from the
// kernel's start to its end. Blocks of equal work are best as whole waves
// of the resident slots (sms x kVecBlocksPerSm): a partial last wave leaves
// SMs with fewer loads in flight, and every extra wave repeats the blocks'
// ramp (query load, first K/V round trip, in-block merge) and adds partials
// for the merge kernel to read.
//
// Worked example, the decode benchmark on an H100: B = 1, Hkv = 8, one
// query, 4 query heads per KV head packed into one 4-row block: 8 blocks
// unsplit, on 132 x 2 = 264 slots. Lk = 32768 is 1024 steps of 32 keys
// (4 warps x 2 lane groups x 4 keys). s = 33 fills one wave exactly; the
// kernel gives each split ceil(1024 / 33) = 32 steps, so 32 splits do all
// the work: 256 blocks in one wave (97% of the slots), each streaming 1024
// keys (0.5 MB of K and V), and the merge reads 32 partials a row. (The
// rule before, 4 x 132 blocks, gave 64 splits in two waves: twice the ramps
// and the partials.) Lk = 1M: 33 splits of 993 steps, one wave.
//
// `base` blocks unsplit, `steps` key steps; each split keeps at least
// `min_steps`, at most `max_splits` splits. The count fills the fewest waves
// (up to 4) whose fill is within 5% of the best: the most splits that fit
// those waves. B = 2 decode: 16 splits, one wave 97% full, rather than 33
// for two full waves; B = 48 (384 blocks): 2 splits, three waves 97% full.
std::int64_t vector_splits(std::int64_t base, std::int64_t steps, std::int64_t min_steps,
                           std::int64_t slots, std::int64_t max_splits);

// Split-K of the tile kernels (mma.sync, Hopper, and the Hopper kernel's
// packed decode mode).
struct TileGrid {
  std::int64_t base = 1;       // blocks unsplit
  std::int64_t units = 0;      // key tiles of the rectangle
  std::int64_t min_units = 1;  // key tiles a split keeps at least
  std::int64_t sms = 1;
  std::int64_t resident = 0;  // blocks resident at once (0: not known)
  bool one_wave = false;      // memory-bound (packed decode): one whole wave
  bool uniform = false;       // blocks of equal work (no causal diagonal)
  std::int64_t max_splits = 1;
};
// A grid smaller than the GPU splits toward ~2 waves of blocks (one whole
// wave when one_wave: 132 SMs / 8 KV heads give 16 splits, not 17, which
// would leave 4 blocks for a second wave), keeping min_units a split.
// A grid of uniform blocks that ends in a partial wave splits 2-4 ways
// when that raises the busy share by more than 5 points per step: 320
// blocks on 264 slots fill 61% unsplit, 81% split 2 ways, 91% 3 ways and
// 97% 4 ways, so they split 4 ways.
std::int64_t tile_splits(const TileGrid& g);

}  // namespace longattn::cuda
