#include "host_array.hpp"

#include "half.hpp"

namespace longattn::cli {

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
