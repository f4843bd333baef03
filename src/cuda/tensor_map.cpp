// Encodes TMA tensor maps through the driver entry point that the runtime
// hands out, so the library does not link libcuda directly.
#include "cuda/tensor_map.hpp"

#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <mutex>

namespace longattn::cuda {
namespace {

PFN_cuTensorMapEncodeTiled_v12000 encode_fn() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    void* ptr = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &ptr, 12000, cudaEnableDefault,
                                         &q) == cudaSuccess &&
        q == cudaDriverEntryPointSuccess)
      fn = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(ptr);
    else
      (void)cudaGetLastError();
  });
  return fn;
}

// A 4-d map (cols, rows, H, B) of `es`-byte elements over a tensor with
// element strides `stride` (unit last), its box `box`, landing with
// `swizzle`; false where the driver cannot describe it. A dimension of
// size 1 is never stepped over, so its stride is free: it gets one the
// driver accepts (a multiple of 16 bytes).
bool encode_4d(CUtensorMap* map, CUtensorMapDataType type, std::int64_t es, const void* base,
               std::int64_t B, std::int64_t H, std::int64_t rows, std::int64_t cols,
               const std::int64_t (&stride)[4], const cuuint32_t (&box)[4],
               CUtensorMapSwizzle swizzle) {
  const auto fn = encode_fn();
  constexpr std::int64_t kCoordLimit = std::int64_t{1} << 31;  // coordinates are int32
  if (fn == nullptr || reinterpret_cast<std::uintptr_t>(base) % 16 != 0 || stride[3] != 1 ||
      rows < 1 || cols < 1 || rows >= kCoordLimit || cols >= kCoordLimit || B < 1 || H < 1)
    return false;
  const std::int64_t sl = stride[2] * es;
  const std::int64_t sh = H > 1 ? stride[1] * es : sl * rows;
  const std::int64_t sb = B > 1 ? stride[0] * es : sh * H;
  for (std::int64_t s : {sl, sh, sb})
    if (s <= 0 || s % 16 != 0 || s >= (std::int64_t{1} << 40)) return false;
  const cuuint64_t dims[4] = {static_cast<cuuint64_t>(cols), static_cast<cuuint64_t>(rows),
                              static_cast<cuuint64_t>(H), static_cast<cuuint64_t>(B)};
  const cuuint64_t strides[3] = {static_cast<cuuint64_t>(sl), static_cast<cuuint64_t>(sh),
                                 static_cast<cuuint64_t>(sb)};
  const cuuint32_t elem_strides[4] = {1, 1, 1, 1};
  return fn(map, type, 4, const_cast<void*>(base), dims, strides, box, elem_strides,
            CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
            CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

}  // namespace

bool encode_rows_map(CUtensorMap* map, const void* base, std::int64_t B, std::int64_t H,
                     std::int64_t rows, std::int64_t D, const std::int64_t (&stride)[4],
                     int box_rows, int box_heads) {
  if (box_heads < 1 || box_heads > H || box_heads > 256 || box_rows < 1 || box_rows > 256)
    return false;
  const cuuint32_t box[4] = {64, static_cast<cuuint32_t>(box_rows),
                             static_cast<cuuint32_t>(box_heads), 1};
  // The element type only sizes the copy (no conversion), so bfloat16 maps
  // serve float16 tensors too.
  return encode_4d(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, base, B, H, rows, D, stride, box,
                   CU_TENSOR_MAP_SWIZZLE_128B);
}

bool encode_mask_map(CUtensorMap* map, const void* base, std::int64_t B, std::int64_t H,
                     std::int64_t rows, std::int64_t cols, const std::int64_t (&stride)[4],
                     int elem_bytes, int box_bytes, int box_rows) {
  const std::int64_t es = elem_bytes;
  if (stride[2] == 0 || (box_bytes != 64 && box_bytes != 128) || box_bytes % es != 0 ||
      box_rows < 1 || box_rows > 256)
    return false;
  const cuuint32_t box[4] = {static_cast<cuuint32_t>(box_bytes / es),
                             static_cast<cuuint32_t>(box_rows), 1, 1};
  const CUtensorMapDataType type = es == 1   ? CU_TENSOR_MAP_DATA_TYPE_UINT8
                                   : es == 2 ? CU_TENSOR_MAP_DATA_TYPE_UINT16
                                             : CU_TENSOR_MAP_DATA_TYPE_UINT32;
  // Broadcast dimensions (stride 0) as size 1, read at coordinate 0.
  return encode_4d(map, type, es, base, stride[0] == 0 ? 1 : B, stride[1] == 0 ? 1 : H, rows, cols,
                   stride, box,
                   box_bytes == 128 ? CU_TENSOR_MAP_SWIZZLE_128B : CU_TENSOR_MAP_SWIZZLE_64B);
}

}  // namespace longattn::cuda
