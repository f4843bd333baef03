// TMA tensor maps for the Hopper prefill kernel: a [B, H, L, D] tensor of
// 16-bit elements with any element strides, described as a 4-d map
// (D, L, H, B) whose box is 64 columns x `box_rows` rows of one (b, h),
// landing in shared memory with the 128-byte swizzle.
#pragma once

#include <cuda.h>

#include <cstdint>

namespace longattn::cuda {

// Fills `map`; false when the driver cannot describe this layout (strides
// not multiples of 16 bytes, misaligned base, sizes past its limits) or the
// driver entry point is missing. The caller then uses another kernel.
// `rows` bounds the L dimension: rows at or past it read as zeros.
// `box_heads` > 1 makes the box span that many heads (packed decode rows:
// box_rows queries of each of box_heads heads, head-major in shared memory).
bool encode_rows_map(CUtensorMap* map, const void* base, std::int64_t B, std::int64_t H,
                     std::int64_t rows, std::int64_t D, const std::int64_t (&stride)[4],
                     int box_rows, int box_heads = 1);

// The same for an array mask [B, H, rows, cols] of `elem_bytes`-byte
// elements (its strides in elements, 0 on the dimensions it broadcasts,
// which TMA cannot step: the map then has size 1 there and the caller reads
// it at coordinate 0), a box of `box_bytes` (128 or 64) of one row's
// elements x `box_rows` rows, landing with the swizzle of that width (the
// Hopper kernel's staged mask rows). False as above, and where the rows
// broadcast (a row stride of 0).
bool encode_mask_map(CUtensorMap* map, const void* base, std::int64_t B, std::int64_t H,
                     std::int64_t rows, std::int64_t cols, const std::int64_t (&stride)[4],
                     int elem_bytes, int box_bytes, int box_rows);

}  // namespace longattn::cuda
