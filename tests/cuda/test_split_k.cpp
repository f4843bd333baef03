// Split-K sizing (src/cuda/split_k.hpp): pure host functions, so these run
// everywhere, GPU or not. The cases are the worked examples of its header
// comments (H100: 132 SMs; the vector kernel 2 resident blocks an SM, the
// Hopper kernel 1).
#include <gtest/gtest.h>

#include <cstdint>

#include "cuda/split_k.hpp"

namespace {

using longattn::cuda::tile_splits;
using longattn::cuda::TileGrid;
using longattn::cuda::vector_splits;
using longattn::cuda::wave_fill;

constexpr std::int64_t kSlots = 132 * 2;
constexpr std::int64_t kKeysPerStep = 32;  // 4 warps x 2 lane groups x 4 keys
constexpr std::int64_t kMinSteps = 128 / kKeysPerStep;

std::int64_t decode_splits(std::int64_t batch, std::int64_t keys) {
  return vector_splits(batch * 8, keys / kKeysPerStep, kMinSteps, kSlots, 256);
}

TEST(SplitK, DecodeFillsOneWave) {
  EXPECT_EQ(decode_splits(1, 32768), 32);    // 256 blocks, 97% of the slots
  EXPECT_EQ(decode_splits(1, 1048576), 33);  // 264 blocks: the whole wave
  EXPECT_EQ(decode_splits(1, 4096), 32);     // 4 steps (128 keys) a split
  EXPECT_EQ(decode_splits(2, 32768), 16);    // one wave 97% full
}

TEST(SplitK, LargeBatchesSplitLittle) {
  EXPECT_EQ(vector_splits(384, 1024, kMinSteps, kSlots, 256), 2);  // three waves, 97% full
  EXPECT_EQ(vector_splits(5000, 1024, kMinSteps, kSlots, 256), 1);
}

TEST(SplitK, RespectsMinimumAndMaximum) {
  // 8 steps with at least 4 a split: 2 splits at most.
  EXPECT_LE(vector_splits(8, 8, 4, kSlots, 256), 2);
  EXPECT_EQ(vector_splits(8, 1024, kMinSteps, kSlots, 5), 5);
  EXPECT_EQ(vector_splits(8, 0, kMinSteps, kSlots, 256), 1);
  EXPECT_GE(vector_splits(0, 1024, kMinSteps, kSlots, 256), 1);
}

TEST(SplitK, NoSplitIsLeftEmpty) {
  // The kernel gives each split ceil(steps / splits) steps: every split the
  // function returns must start before the end.
  for (std::int64_t base : {1, 3, 8, 17, 100})
    for (std::int64_t steps : {1, 2, 5, 31, 100, 1000, 33333}) {
      const std::int64_t s = vector_splits(base, steps, 1, kSlots, 256);
      const std::int64_t per = (steps + s - 1) / s;
      EXPECT_LT((s - 1) * per, steps) << "base " << base << " steps " << steps << " splits " << s;
    }
}

TEST(SplitK, WaveFill) {
  EXPECT_DOUBLE_EQ(wave_fill(320, 264), 320.0 / 528);
  EXPECT_DOUBLE_EQ(wave_fill(264, 264), 1.0);
  EXPECT_DOUBLE_EQ(wave_fill(1, 264), 1.0 / 264);
}

// The Hopper kernel's grid on an H100: one block an SM.
TileGrid hopper_grid(std::int64_t base, std::int64_t units, bool uniform) {
  TileGrid g;
  g.base = base, g.units = units, g.min_units = 4, g.sms = 132, g.resident = 132;
  g.uniform = uniform, g.max_splits = 256;
  return g;
}

TEST(SplitK, PackedDecodeFillsOneWholeWave) {
  // 8 KV heads, one 64-row block each; 32K keys in 64-key tiles.
  TileGrid g;
  g.base = 8, g.units = 512, g.min_units = 2, g.sms = 132, g.one_wave = true, g.max_splits = 256;
  EXPECT_EQ(tile_splits(g), 16);  // 128 blocks; 17 would leave 4 for a second wave
  g.units = 8;                    // 512 keys: 2 tiles a split at least
  EXPECT_EQ(tile_splits(g), 4);
}

TEST(SplitK, SmallPrefillGridsAimForTwoWaves) {
  // 64 blocks on 132 SMs: ceil(264 / 64) = 5 splits, each >= 4 key tiles.
  EXPECT_EQ(tile_splits(hopper_grid(64, 47, false)), 5);
  EXPECT_EQ(tile_splits(hopper_grid(64, 12, false)), 3);  // 12 tiles / 4 a split
  EXPECT_EQ(tile_splits(hopper_grid(64, 7, false)), 1);   // fewer than 2 x 4 tiles
  TileGrid g = hopper_grid(64, 47, false);
  g.max_splits = 2;  // the workspace holds two
  EXPECT_EQ(tile_splits(g), 2);
}

TEST(SplitK, PartialLastWavesOfUniformBlocksSplit) {
  // 320 blocks on 132 slots: 3 waves, 81% busy; split 2 ways 97%, and 3 or
  // 4 ways gain nothing more.
  EXPECT_EQ(tile_splits(hopper_grid(320, 64, true)), 2);
  // The header's example, on 264 slots (two mma.sync blocks an SM): 61%,
  // 81%, 91%, 97% for 1-4 ways, each step more than 5 points: 4 ways.
  TileGrid two_per_sm = hopper_grid(320, 64, true);
  two_per_sm.resident = 264;
  EXPECT_EQ(tile_splits(two_per_sm), 4);
  EXPECT_EQ(tile_splits(hopper_grid(320, 64, false)), 1);  // causal blocks differ in work
  EXPECT_EQ(tile_splits(hopper_grid(264, 64, true)), 1);   // whole waves already
  EXPECT_EQ(tile_splits(hopper_grid(320, 8, true)), 1);    // too few key tiles
}

}  // namespace
