#include "host_array.hpp"

#include <fmt/format.h>
#include <sys/sysinfo.h>

#include <new>

#include "half.hpp"
#include "summary.hpp"

namespace longattn::cli {
namespace {

std::string dims(const std::vector<std::int64_t>& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// RAM plus swap: a request above it cannot be met. Asking anyway would not
// fail cleanly everywhere: with overcommit the allocation succeeds and the
// process is killed when the pages are touched, and ASan aborts on it.
double memory_bytes() {
  struct sysinfo si {};
  if (::sysinfo(&si) != 0) return 0;
  return (static_cast<double>(si.totalram) + static_cast<double>(si.totalswap)) * si.mem_unit;
}

}  // namespace

HostArray::HostArray(DType t, std::vector<std::int64_t> s, const std::string& what)
    : dtype(t), shape(std::move(s)) {
  const std::string desc = what + " " + dims(shape) + " " + dtype_name(dtype);
  std::size_t bytes = dtype_size(dtype);
  for (auto d : shape)
    if (d < 0 || __builtin_mul_overflow(bytes, static_cast<std::size_t>(d), &bytes))
      throw OutOfMemory("[longattn] " + desc + " is too large to hold in memory");
  const double have = memory_bytes();
  const auto fail = [&](const std::string& why) {
    throw OutOfMemory(fmt::format("[longattn] cannot allocate {} of host memory for {}{}",
                                  format_bytes(static_cast<double>(bytes)), desc, why));
  };
  if (have > 0 && static_cast<double>(bytes) > have)
    fail(" (this machine has " + format_bytes(have) + " of memory and swap)");
  try {
    data.resize(bytes);
  } catch (const std::bad_alloc&) {
    fail("");
  } catch (const std::length_error&) {
    fail("");
  }
}

double element_as_double(const HostArray& a, std::int64_t i) {
  switch (a.dtype) {
    case DType::float32:
      return a.as<float>()[i];
    case DType::float16:
      return f16_to_float(a.as<std::uint16_t>()[i]);
    case DType::bfloat16:
      return bf16_to_float(a.as<std::uint16_t>()[i]);
    case DType::boolean:
      return a.as<std::uint8_t>()[i] != 0 ? 1.0 : 0.0;
  }
  throw InvalidArgument("[longattn] element_as_double: unknown dtype");
}

}  // namespace longattn::cli
