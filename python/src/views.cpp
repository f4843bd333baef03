#include "views.hpp"

#include <sstream>

#include "longattn/error.hpp"

namespace longattn::py {
namespace {

// DLPack's device types (dlpack.h, DLDeviceType).
constexpr int kDLCPU = 1, kDLCUDA = 2, kDLCUDAHost = 3, kDLCUDAManaged = 13;

const char* dlpack_device_name(int type) {
  switch (type) {
    case 4:
      return "OpenCL";
    case 7:
      return "Vulkan";
    case 8:
      return "Metal";
    case 9:
      return "VPI";
    case 10:
      return "ROCm";
    case 11:
      return "ROCm host";
    case 12:
      return "ext_dev";
    case 14:
      return "oneAPI";
    case 15:
      return "WebGPU";
    case 16:
      return "Hexagon";
    default:
      return "unknown";
  }
}

std::string dlpack_dtype_name(nb::dlpack::dtype t) {
  using Code = nb::dlpack::dtype_code;
  std::string s;
  switch (static_cast<Code>(t.code)) {
    case Code::Int:
      s = "int";
      break;
    case Code::UInt:
      s = "uint";
      break;
    case Code::Float:
      s = "float";
      break;
    case Code::Bfloat:
      s = "bfloat";
      break;
    case Code::Complex:
      s = "complex";
      break;
    case Code::Bool:
      return "bool";
    default:
      s = "dlpack code " + std::to_string(t.code) + " of ";
  }
  s += std::to_string(t.bits);
  if (t.lanes != 1) s += " x" + std::to_string(t.lanes);
  return s;
}

template <class Array>
std::string shape_of(const Array& a) {
  std::ostringstream s;
  s << '[';
  for (std::size_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.shape(i);
  s << ']';
  return s.str();
}

// NumPy arrays of ml_dtypes.bfloat16 have neither a DLPack nor a buffer
// export, so the Python layer passes them as a pair (the same memory viewed
// as uint16, "bfloat16"); see longattn/_arrays.py. Returns the array and
// whether it came as such a pair.
std::pair<nb::object, bool> unwrap_bfloat16(nb::handle obj) {
  if (nb::isinstance<nb::tuple>(obj) && nb::len(obj) == 2) {
    const nb::object tag = obj[1];
    if (nb::isinstance<nb::str>(tag) && std::string(nb::str(tag).c_str()) == "bfloat16")
      return {obj[0], true};
  }
  return {nb::borrow(obj), false};
}

// Why an object with __dlpack__ did not export: its own error, e.g. torch's
// "Can't export tensors that require gradient" or "... on a different CUDA
// device index". Called only once the import has failed.
std::string exporter_says(nb::handle obj) {
  if (!nb::hasattr(obj, "__dlpack__")) return "";
  try {
    (void)obj.attr("__dlpack__")();
  } catch (const nb::python_error& e) {
    return std::string("; its __dlpack__() raised ") + nb::type_name(e.type()).c_str() + ": " +
           nb::str(e.value()).c_str();
  }
  return "";
}

}  // namespace

template <class Array>
TensorView ArraySet::convert(const Array& a, const std::string& name, Arrange arrange,
                             bool bfloat16_bits) {
  auto fail = [&](const std::string& what) -> TensorView {
    throw InvalidArgument(std::string("[") + op_ + "] " + name + what);
  };
  const int ndim = static_cast<int>(a.ndim());
  if (ndim > 4)
    fail(".ndim = " + std::to_string(ndim) + " (shape " + shape_of(a) +
         "): longattn's arrays have at most 4 dims");

  TensorView v;
  v.data = const_cast<void*>(static_cast<const void*>(a.data()));
  const nb::dlpack::dtype t = a.dtype();
  using Code = nb::dlpack::dtype_code;
  const auto code = static_cast<Code>(t.code);
  if (bfloat16_bits) {
    if (t.lanes != 1 || code != Code::UInt || t.bits != 16)
      fail(".dtype = " + dlpack_dtype_name(t) + " given as bfloat16 bits: must be uint16");
    v.dtype = DType::bfloat16;
  } else if (t.lanes == 1 && code == Code::Float && t.bits == 32)
    v.dtype = DType::float32;
  else if (t.lanes == 1 && code == Code::Float && t.bits == 16)
    v.dtype = DType::float16;
  else if (t.lanes == 1 && code == Code::Bfloat && t.bits == 16)
    v.dtype = DType::bfloat16;
  else if (t.lanes == 1 && code == Code::Bool && t.bits == 8)
    v.dtype = DType::boolean;
  else
    fail(".dtype = " + dlpack_dtype_name(t) +
         ": longattn reads float32, float16 and bfloat16 arrays (and bool masks)");

  switch (a.device_type()) {
    case kDLCPU:
    case kDLCUDAHost:  // pinned host memory: the CPU reads it
      v.device = Device::cpu;
      break;
    case kDLCUDA:
    case kDLCUDAManaged:
      v.device = Device::cuda;
      if (cuda_device_ < 0) {
        cuda_device_ = a.device_id();
        cuda_device_owner_ = name;
      } else if (a.device_id() != cuda_device_) {
        fail(" is on cuda:" + std::to_string(a.device_id()) + " but " + cuda_device_owner_ +
             " is on cuda:" + std::to_string(cuda_device_) +
             ": every array of a call must be on one device");
      }
      break;
    default:
      throw Unsupported(std::string("[") + op_ + "] " + name + " is in " +
                        dlpack_device_name(a.device_type()) + " memory (DLPack device type " +
                        std::to_string(a.device_type()) + "): longattn reads CPU and CUDA memory");
  }

  // Dims are placed right-aligned for leading_ones (NumPy broadcasting) and
  // left-aligned otherwise; unused dims of a view are ignored (tensor.hpp).
  const int offset = arrange == Arrange::leading_ones ? 4 - ndim : 0;
  v.rank = ndim + offset;
  for (int i = 0; i < offset; ++i) {
    v.shape[static_cast<std::size_t>(i)] = 1;
    v.strides[static_cast<std::size_t>(i)] = 0;
  }
  for (int i = 0; i < ndim; ++i) {
    const auto u = static_cast<std::size_t>(i + offset);
    v.shape[u] = static_cast<std::int64_t>(a.shape(static_cast<std::size_t>(i)));
    v.strides[u] = a.stride(static_cast<std::size_t>(i));
  }
  if (arrange == Arrange::bshd && ndim == 4) {
    std::swap(v.shape[1], v.shape[2]);
    std::swap(v.strides[1], v.strides[2]);
    const std::string note =
        "layout 'bshd': arrays of shape [B, S, H, D] are read as [B, H, S, D], so their "
        "dims 1 and 2 appear swapped in this message";
    if (notes_.empty() || notes_.front().text != note)
      notes_.insert(notes_.begin(), Note{".shape", note});
  }
  if (offset > 0)
    notes_.push_back(
        Note{name + ".", name + " of shape " + shape_of(a) + " is read as " + v.shape_string()});
  return v;
}

TensorView ArraySet::input(nb::handle given, const std::string& name, Arrange arrange) {
  if (given.is_none()) return {};
  const auto [obj, bfloat16_bits] = unwrap_bfloat16(given);
  nb::ndarray<nb::ro> a;
  if (!nb::try_cast(obj, a, false))
    throw InvalidArgument(std::string("[") + op_ + "] " + name + " of type " +
                          nb::type_name(obj.type()).c_str() +
                          " is not an array longattn can read in place (it needs __dlpack__ or "
                          "the buffer protocol, and a dtype and device DLPack can describe)" +
                          exporter_says(obj));
  inputs_.push_back(a);
  return convert(inputs_.back(), name, arrange, bfloat16_bits);
}

TensorView ArraySet::output(nb::handle given, const std::string& name, Arrange arrange) {
  if (given.is_none()) return {};
  const auto [obj, bfloat16_bits] = unwrap_bfloat16(given);
  nb::ndarray<> a;
  if (!nb::try_cast(obj, a, false)) {
    nb::ndarray<nb::ro> readonly;
    const bool ro = nb::try_cast(obj, readonly, false);
    throw InvalidArgument(std::string("[") + op_ + "] " + name + " of type " +
                          nb::type_name(obj.type()).c_str() +
                          (ro ? " is read-only: an output must be writable"
                              : " is not an array longattn can write in place (it needs "
                                "__dlpack__ or the buffer protocol)" +
                                    exporter_says(obj)));
  }
  outputs_.push_back(a);
  return convert(outputs_.back(), name, arrange, bfloat16_bits);
}

std::string ArraySet::notes_for(const std::string& message) const {
  std::string s;
  for (const Note& n : notes_)
    if (message.find(n.trigger) != std::string::npos) s += (s.empty() ? " (" : "; ") + n.text;
  return s.empty() ? s : s + ")";
}

}  // namespace longattn::py
