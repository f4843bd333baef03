// Split-K sizing of the vector (decode) kernel: how many key splits a
// dispatch gets so that its blocks fill the GPU in whole waves. A pure
// function of the grid, so the CPU tests check it.
#pragma once

#include <cstdint>

namespace longattn::cuda {

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

}  // namespace longattn::cuda
