// Split-K sizing of the vector kernel (src/cuda/split_k.hpp): a pure host
// function, so these run everywhere, GPU or not. The cases are the worked
// examples of its header comment (H100: 132 SMs x 2 resident blocks).
#include <gtest/gtest.h>

#include <cstdint>

#include "cuda/split_k.hpp"

namespace {

using longattn::cuda::vector_splits;

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

}  // namespace
