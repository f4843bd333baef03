// Host conversions between float and the 16-bit storage types. Rounding is
// to nearest even, as on every GPU and in PyTorch; NaN stays NaN.
#pragma once

#include <cstdint>
#include <cstring>

#include "longattn/tensor.hpp"

namespace longattn::core {

inline float bf16_to_float(std::uint16_t h) {
  const std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline std::uint16_t float_to_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u)
    return static_cast<std::uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}

inline float fp16_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  std::uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else {  // subnormal: normalize
      int e = -1;
      do {
        ++e;
        man <<= 1;
      } while ((man & 0x400u) == 0);
      u = sign | static_cast<std::uint32_t>(127 - 15 - e) << 23 | (man & 0x3ffu) << 13;
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | man << 13;
  } else {
    u = sign | (exp + 112) << 23 | man << 13;
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline std::uint16_t float_to_fp16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  const std::uint16_t sign = static_cast<std::uint16_t>((u >> 16) & 0x8000u);
  const std::uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7e00u);   // NaN
  if (a >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // overflow -> inf
  if (a < 0x38800000u) {  // subnormal or zero in fp16: round via float add trick
    float t;
    std::memcpy(&t, &a, 4);
    t += 0.5f;  // 2^-1: aligns the fp16 subnormal ulp (2^-24) to float's last bit
    std::uint32_t tu;
    std::memcpy(&tu, &t, 4);
    return static_cast<std::uint16_t>(sign | (tu - 0x3f000000u));
  }
  const std::uint32_t rounded = a + 0xfffu + ((a >> 13) & 1u);
  return static_cast<std::uint16_t>(sign | ((rounded - 0x38000000u) >> 13));
}

inline float load_as_float(const void* base, std::int64_t index, DType t) {
  switch (t) {
    case DType::float32:
      return static_cast<const float*>(base)[index];
    case DType::float16:
      return fp16_to_float(static_cast<const std::uint16_t*>(base)[index]);
    case DType::bfloat16:
      return bf16_to_float(static_cast<const std::uint16_t*>(base)[index]);
    case DType::boolean:
      return static_cast<const std::uint8_t*>(base)[index] ? 1.f : 0.f;
  }
  return 0.f;
}

inline void store_from_float(void* base, std::int64_t index, DType t, float v) {
  switch (t) {
    case DType::float32:
      static_cast<float*>(base)[index] = v;
      return;
    case DType::float16:
      static_cast<std::uint16_t*>(base)[index] = float_to_fp16(v);
      return;
    case DType::bfloat16:
      static_cast<std::uint16_t*>(base)[index] = float_to_bf16(v);
      return;
    case DType::boolean:
      static_cast<std::uint8_t*>(base)[index] = v != 0.f;
      return;
  }
}

}  // namespace longattn::core
