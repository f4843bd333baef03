// What both CPU benches share: reproducible random inputs, a median, and the
// machine description printed with every table.
//
// Inputs come from a counter-based generator (splitmix64 of seed + index)
// that bench/peer_torch.py reimplements bit for bit, so longattn and the peer
// see identical tensors: value = uniform in [-2, 2) with 24 random bits,
// rounded to the case's dtype (bfloat16: round to nearest even).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "longattn/tensor.hpp"

namespace longattn::bench {

constexpr std::uint64_t kGolden = 0x9E3779B97F4A7C15ull;

inline std::uint64_t splitmix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Element i of the stream `seed`: uniform in [-2, 2), exactly representable
// in float32.
inline float random_value(std::uint64_t seed, std::uint64_t i) {
  const std::uint64_t z = splitmix64(seed + (i + 1) * kGolden);
  return static_cast<float>(z >> 40) * (4.0f / 16777216.0f) - 2.0f;
}

inline std::uint16_t float_to_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7FFFu + ((u >> 16) & 1u);  // round to nearest even (inputs are finite)
  return static_cast<std::uint16_t>(u >> 16);
}

// A host buffer of n elements of `dtype` (float32 or bfloat16) filled from
// stream `seed`.
struct Buffer {
  std::vector<std::uint8_t> bytes;
  DType dtype = DType::float32;
  void* data() { return bytes.data(); }
};

inline Buffer random_buffer(DType dtype, std::int64_t n, std::uint64_t seed) {
  Buffer b;
  b.dtype = dtype;
  b.bytes.resize(static_cast<std::size_t>(n) * dtype_size(dtype));
  if (dtype == DType::float32) {
    auto* p = reinterpret_cast<float*>(b.bytes.data());
#pragma omp parallel for schedule(static)
    for (std::int64_t i = 0; i < n; ++i) p[i] = random_value(seed, static_cast<std::uint64_t>(i));
  } else {
    auto* p = reinterpret_cast<std::uint16_t*>(b.bytes.data());
#pragma omp parallel for schedule(static)
    for (std::int64_t i = 0; i < n; ++i)
      p[i] = float_to_bf16(random_value(seed, static_cast<std::uint64_t>(i)));
  }
  return b;
}

inline double to_double(const Buffer& b, std::int64_t i) {
  if (b.dtype == DType::float32) return reinterpret_cast<const float*>(b.bytes.data())[i];
  const std::uint32_t u =
      static_cast<std::uint32_t>(reinterpret_cast<const std::uint16_t*>(b.bytes.data())[i]) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Sum of all elements: a cheap fingerprint to compare with the peer's output.
inline double checksum(const Buffer& b) {
  const auto n = static_cast<std::int64_t>(b.bytes.size() / dtype_size(b.dtype));
  double s = 0;
  for (std::int64_t i = 0; i < n; ++i) s += to_double(b, i);
  return s;
}

inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// `requested` threads, or all hardware threads for 0.
inline int hardware_threads(int requested) {
  return requested > 0 ? requested
                       : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

inline double now_ms() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// CPU time of the whole process (all threads), in ms. Beside wall time it
// shows how much of the machine a run really got when others share it.
inline double cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) * 1e-6;
}

// "AMD EPYC (2 cores)" from /proc/cpuinfo, for the table headers.
inline std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      const auto c = line.find(':');
      if (c != std::string::npos) return line.substr(c + 2);
    }
  return "unknown CPU";
}

}  // namespace longattn::bench
