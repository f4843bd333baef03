// Scalar float16 / bfloat16 <-> float conversions for the tool's own use
// (input generation, .npy conversion, the float64 reference check). The
// library has its own; the tool keeps an independent copy so that a bug in
// one cannot hide the same bug in the other.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace longattn::cli {

inline float bf16_to_float(std::uint16_t h) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16);
}

// Round to nearest even; NaN stays a (quiet) NaN.
inline std::uint16_t float_to_bf16(float f) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
  if (std::isnan(f)) return static_cast<std::uint16_t>((u >> 16) | 0x40);
  const std::uint32_t rounding = 0x7fff + ((u >> 16) & 1);
  return static_cast<std::uint16_t>((u + rounding) >> 16);
}

inline float f16_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1f;
  const std::uint32_t man = h & 0x3ff;
  if (exp == 0) {
    // Zero or subnormal: value = man * 2^-24.
    const float v = std::ldexp(static_cast<float>(man), -24);
    return sign ? -v : v;
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7f800000u | (man << 13));
  return std::bit_cast<float>(sign | ((exp + 112) << 23) | (man << 13));
}

// Round to nearest even, overflow to inf, NaN to NaN.
inline std::uint16_t float_to_f16(float f) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
  const std::uint16_t sign = static_cast<std::uint16_t>((u >> 16) & 0x8000);
  const std::uint32_t abs = u & 0x7fffffffu;
  if (abs >= 0x7f800000u)
    return static_cast<std::uint16_t>(sign | 0x7c00 | (abs > 0x7f800000u ? 0x200 : 0));
  if (abs >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00);  // rounds past 65504
  if (abs < 0x38800000u) {
    // Subnormal half (or zero): scale into units of 2^-24 and round to even.
    const float a = std::bit_cast<float>(abs);
    const float scaled = a * 16777216.0f;  // exact: a power of two
    const float r = std::nearbyint(scaled);
    return static_cast<std::uint16_t>(sign | static_cast<std::uint16_t>(r));
  }
  const std::uint32_t rounding = 0xfff + ((abs >> 13) & 1);
  const std::uint32_t r = (abs + rounding) >> 13;
  return static_cast<std::uint16_t>(sign | static_cast<std::uint16_t>(r - (112u << 10)));
}

}  // namespace longattn::cli
