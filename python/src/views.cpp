#include "views.hpp"

#include <nanobind/stl/string.h>

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

// Arrays that come from longattn._arrays.native() as a pair (array, tag):
// - "bfloat16": NumPy arrays of ml_dtypes.bfloat16 have neither a DLPack nor
//   a buffer export; those the fast reader does not take (a subclass of
//   ndarray) come as the same memory viewed as uint16;
// - "cuda_managed": an MLX array of MLX's CUDA backend, exported as host
//   memory, which is CUDA managed memory that the CUDA backend reads in place
//   (checked in import()).
enum class Tag { none, bfloat16_bits, cuda_managed };

std::pair<nb::object, Tag> unwrap_tagged(nb::handle obj) {
  if (nb::isinstance<nb::tuple>(obj) && nb::len(obj) == 2) {
    const nb::object tag = obj[1];
    if (nb::isinstance<nb::str>(tag)) {
      const std::string name = nb::str(tag).c_str();
      if (name == "bfloat16") return {obj[0], Tag::bfloat16_bits};
      if (name == "cuda_managed") return {obj[0], Tag::cuda_managed};
    }
  }
  return {nb::borrow(obj), Tag::none};
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

template <class Array>
std::string shape_of(const Array& a) {
  std::ostringstream s;
  s << '[';
  for (std::size_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.shape(i);
  s << ']';
  return s.str();
}

std::string shape_of(const ArrayDesc& a) {
  std::ostringstream s;
  s << '[';
  for (int i = 0; i < a.ndim; ++i) s << (i ? ", " : "") << a.shape[static_cast<std::size_t>(i)];
  s << ']';
  return s.str();
}

// An array nanobind imported, as an ArrayDesc; false when it has more dims.
template <class Array>
bool describe(const Array& a, ArrayDesc& d) {
  if (a.ndim() > d.shape.size()) return false;
  d.data = const_cast<void*>(static_cast<const void*>(a.data()));
  d.dtype = a.dtype();
  d.device_type = a.device_type();
  d.device_id = a.device_id();
  d.ndim = static_cast<int>(a.ndim());
  for (std::size_t i = 0; i < a.ndim(); ++i) {
    d.shape[i] = static_cast<std::int64_t>(a.shape(i));
    d.strides[i] = a.stride(i);
  }
  return true;
}

// ---- the fast readers ----------------------------------------------------------

// What the fast readers compare against, looked up in sys.modules once the
// caller has imported the framework (this module imports none). The
// references are never released: types and dtypes live as long as their
// modules, and nothing may be released after the interpreter is gone.
struct Known {
  PyTypeObject* ndarray = nullptr;    // numpy.ndarray
  PyObject* bfloat16 = nullptr;       // numpy.dtype(ml_dtypes.bfloat16), once seen
  PyTypeObject* tensor = nullptr;     // torch.Tensor
  PyTypeObject* parameter = nullptr;  // torch.nn.Parameter
  PyObject* strided = nullptr;        // torch.strided
  PyObject* to_dlpack = nullptr;      // torch.utils.dlpack.to_dlpack
  // Attribute names, interned once.
  PyObject* array_struct = PyUnicode_InternFromString("__array_struct__");
  PyObject* dtype = PyUnicode_InternFromString("dtype");
  PyObject* name = PyUnicode_InternFromString("name");
  PyObject* requires_grad = PyUnicode_InternFromString("requires_grad");
  PyObject* is_neg = PyUnicode_InternFromString("is_neg");
  PyObject* layout = PyUnicode_InternFromString("layout");
};

Known& known() {
  static Known* k = new Known();  // never destroyed (see above)
  return *k;
}

// sys.modules[name] if the caller imported it, else an invalid object.
nb::object imported(const char* name) {
  nb::object m = nb::steal(PyImport_GetModule(nb::str(name).ptr()));
  if (!m.is_valid()) PyErr_Clear();
  return m;
}

// Fills in what is not known yet, from the modules imported since.
void learn_frameworks(Known& k) {
  try {
    if (!k.ndarray) {
      if (const nb::object np = imported("numpy"); np.is_valid())
        k.ndarray = reinterpret_cast<PyTypeObject*>(nb::object(np.attr("ndarray")).release().ptr());
    }
    if (!k.tensor) {
      // All or nothing: a torch still being imported is looked at again later.
      if (const nb::object torch = imported("torch"); torch.is_valid()) {
        nb::object tensor = torch.attr("Tensor"), parameter = torch.attr("nn").attr("Parameter"),
                   strided = torch.attr("strided"),
                   to_dlpack = torch.attr("utils").attr("dlpack").attr("to_dlpack");
        k.parameter = reinterpret_cast<PyTypeObject*>(parameter.release().ptr());
        k.strided = strided.release().ptr();
        k.to_dlpack = to_dlpack.release().ptr();
        k.tensor = reinterpret_cast<PyTypeObject*>(tensor.release().ptr());
      }
    }
  } catch (const nb::python_error&) {
    // A framework without these names: its arrays take the general route.
  }
}

// NumPy's PyArrayInterface (numpy/ndarraytypes.h), the C side of the array
// interface protocol: what ndarray.__array_struct__ holds.
struct ArrayInterface {
  int two;  // always 2
  int nd;
  char typekind;  // as in the dtype's kind: 'f', 'i', 'u', 'b', 'c', 'V', ...
  int itemsize;
  int flags;
  Py_intptr_t* shape;
  Py_intptr_t* strides;  // in bytes
  void* data;
  PyObject* descr;
};
constexpr int kNpyAligned = 0x100, kNpyNotSwapped = 0x200, kNpyWriteable = 0x400;

// Whether a NumPy array of kind 'V' is one of ml_dtypes.bfloat16 (its dtype
// is named so; the test the Python layer has always made).
bool is_bfloat16(nb::handle a, Known& k) {
  const nb::object dt = nb::steal(PyObject_GetAttr(a.ptr(), k.dtype));
  if (!dt.is_valid()) return PyErr_Clear(), false;
  if (dt.ptr() == k.bfloat16) return true;
  const nb::object name = nb::steal(PyObject_GetAttr(dt.ptr(), k.name));
  if (!name.is_valid()) return PyErr_Clear(), false;
  if (!PyUnicode_Check(name.ptr()) || PyUnicode_CompareWithASCIIString(name.ptr(), "bfloat16") != 0)
    return false;
  if (!k.bfloat16) k.bfloat16 = nb::object(dt).release().ptr();
  return true;
}

// A numpy.ndarray through __array_struct__. Declines (false) what DLPack
// would not describe the same way, so that the general route decides as it
// always has: byte-swapped or misaligned data, strides that are not whole
// elements, more than 4 dims, dtypes with no DLPack code; and, for an
// output, a read-only array (the general route names it).
bool read_numpy(nb::handle a, bool writable, ArrayDesc& d, Known& k) {
  const nb::object capsule = nb::steal(PyObject_GetAttr(a.ptr(), k.array_struct));
  if (!capsule.is_valid()) return PyErr_Clear(), false;
  const auto* ai = static_cast<const ArrayInterface*>(
      PyCapsule_GetPointer(capsule.ptr(), PyCapsule_GetName(capsule.ptr())));
  if (!ai) return PyErr_Clear(), false;
  const int need = kNpyAligned | kNpyNotSwapped | (writable ? kNpyWriteable : 0);
  if (ai->two != 2 || (ai->flags & need) != need || ai->nd < 0 ||
      ai->nd > static_cast<int>(d.shape.size()) || ai->itemsize <= 0 ||
      (ai->nd > 0 && (!ai->shape || !ai->strides)))
    return false;
  using Code = nb::dlpack::dtype_code;
  Code code;
  switch (ai->typekind) {
    case 'f':
      code = Code::Float;
      break;
    case 'i':
      code = Code::Int;
      break;
    case 'u':
      code = Code::UInt;
      break;
    case 'b':
      code = Code::Bool;
      break;
    case 'c':
      code = Code::Complex;
      break;
    case 'V':
      if (ai->itemsize == 2 && is_bfloat16(a, k)) {
        code = Code::Bfloat;
        break;
      }
      return false;
    default:
      return false;
  }
  d.dtype = {static_cast<std::uint8_t>(code), static_cast<std::uint8_t>(ai->itemsize * 8), 1};
  d.data = ai->data;
  d.device_type = kDLCPU;
  d.device_id = 0;
  d.ndim = ai->nd;
  for (int i = 0; i < ai->nd; ++i) {
    const auto u = static_cast<std::size_t>(i);
    if (ai->strides[i] % ai->itemsize != 0) return false;
    d.shape[u] = static_cast<std::int64_t>(ai->shape[i]);
    d.strides[u] = static_cast<std::int64_t>(ai->strides[i] / ai->itemsize);
  }
  return true;
}

// 1 if t.<name> (or t.<name>() when `call`) is true, 0 if false, -1 on error.
int torch_flag(nb::handle t, PyObject* name, bool call) {
  const nb::object r =
      nb::steal(call ? PyObject_CallMethodNoArgs(t.ptr(), name) : PyObject_GetAttr(t.ptr(), name));
  return r.is_valid() ? PyObject_IsTrue(r.ptr()) : -1;
}

// A torch tensor's DLPack capsule from torch.utils.dlpack.to_dlpack, the
// export Tensor.__dlpack__ ends in, after the refusals __dlpack__ makes first
// (a tensor that requires grad: longattn._arrays.native() decides; a layout
// other than strided; the conjugate bit exists only on complex dtypes, which
// convert() refuses) and one it does not make: a negated view (is_neg())
// exports memory that holds -t. Invalid when any of them says no.
nb::object torch_capsule(nb::handle t, Known& k) {
  if (torch_flag(t, k.requires_grad, false) != 0 || torch_flag(t, k.is_neg, true) != 0)
    return PyErr_Clear(), nb::object();
  const nb::object layout = nb::steal(PyObject_GetAttr(t.ptr(), k.layout));
  if (!layout.is_valid() || layout.ptr() != k.strided) return PyErr_Clear(), nb::object();
  nb::object capsule = nb::steal(PyObject_CallOneArg(k.to_dlpack, t.ptr()));
  if (!capsule.is_valid()) PyErr_Clear();  // no storage (a fake or functional tensor), ...
  return capsule;
}

}  // namespace

bool ArraySet::read_fast(nb::handle obj, bool writable, ArrayDesc& d) {
  Known& k = known();
  PyTypeObject* type = Py_TYPE(obj.ptr());
  const auto recognised = [&] {
    return type == k.ndarray || type == k.tensor || type == k.parameter;
  };
  if (!recognised()) {
    if (k.ndarray && k.tensor) return false;
    learn_frameworks(k);
    if (!recognised()) return false;
  }
  if (type == k.ndarray) {
    if (!read_numpy(obj, writable, d, k)) return false;
    keep_.push_back(nb::borrow(obj));
    return true;
  }
  const nb::object capsule = torch_capsule(obj, k);
  if (!capsule.is_valid()) return false;
  if (writable) {
    nb::ndarray<> a;
    if (!nb::try_cast(capsule, a, false) || !describe(a, d)) return false;
    outputs_.push_back(std::move(a));
  } else {
    nb::ndarray<nb::ro> a;
    if (!nb::try_cast(capsule, a, false) || !describe(a, d)) return false;
    inputs_.push_back(std::move(a));
  }
  return true;
}

void ArraySet::use_cuda_device(int device) {
  if (!cuda_scope_) cuda_scope_.emplace(op_, device);
}

TensorView ArraySet::convert(const ArrayDesc& a, const std::string& name, Arrange arrange,
                             bool bfloat16_bits) {
  auto fail = [&](const std::string& what) -> TensorView {
    throw InvalidArgument(std::string("[") + op_ + "] " + name + what);
  };
  TensorView v;
  v.data = a.data;
  const nb::dlpack::dtype t = a.dtype;
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

  switch (a.device_type) {
    case kDLCPU:
    case kDLCUDAHost:  // pinned host memory: the CPU reads it
      v.device = Device::cpu;
      break;
    case kDLCUDA:
    case kDLCUDAManaged:
      v.device = Device::cuda;
      if (cuda_device_ < 0) {
        cuda_device_ = a.device_id;
        cuda_device_owner_ = name;
        use_cuda_device(a.device_id);
      } else if (a.device_id != cuda_device_) {
        fail(" is on cuda:" + std::to_string(a.device_id) + " but " + cuda_device_owner_ +
             " is on cuda:" + std::to_string(cuda_device_) +
             ": every array of a call must be on one device");
      }
      break;
    default:
      throw Unsupported(std::string("[") + op_ + "] " + name + " is in " +
                        dlpack_device_name(a.device_type) + " memory (DLPack device type " +
                        std::to_string(a.device_type) + "): longattn reads CPU and CUDA memory");
  }

  // Dims are placed right-aligned for leading_ones (NumPy broadcasting) and
  // left-aligned otherwise; unused dims of a view are ignored (tensor.hpp).
  const int ndim = a.ndim;
  const int offset = arrange == Arrange::leading_ones ? 4 - ndim : 0;
  v.rank = ndim + offset;
  for (int i = 0; i < offset; ++i) {
    v.shape[static_cast<std::size_t>(i)] = 1;
    v.strides[static_cast<std::size_t>(i)] = 0;
  }
  for (int i = 0; i < ndim; ++i) {
    const auto u = static_cast<std::size_t>(i + offset);
    v.shape[u] = a.shape[static_cast<std::size_t>(i)];
    v.strides[u] = a.strides[static_cast<std::size_t>(i)];
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

// The general route: longattn._arrays.native() first (the framework's rules:
// a tensor that requires grad, a negated view, bfloat16 arrays as bits), then
// nanobind's DLPack or buffer-protocol import.
TensorView ArraySet::import(nb::handle given, const std::string& name, Arrange arrange,
                            bool writable) {
  const nb::object prepared =
      nb::module_::import_("longattn._arrays").attr("native")(op_, name, given);
  ArrayDesc d;
  if (!prepared.is(given) && read_fast(prepared, writable, d))
    return convert(d, name, arrange, false);
  const auto [obj, tag] = unwrap_tagged(prepared);
  const bool bfloat16_bits = tag == Tag::bfloat16_bits;
  // An MLX-on-CUDA array: host memory to DLPack, managed memory in fact, which
  // the arrays' device reads; anything else is refused, never read wrongly.
  const auto as_managed = [&](ArrayDesc& desc) {
    if (tag != Tag::cuda_managed || desc.device_type != kDLCPU) return;
    const int device = managed_memory_device(desc.data);
    if (device < 0)
      throw Unsupported(std::string("[") + op_ + "] " + name +
                        " was given as CUDA managed memory (an MLX array on MLX's CUDA "
                        "backend) but its memory is not: run the call on MLX's CPU device or "
                        "through path='ops'");
    desc.device_type = kDLCUDAManaged;
    desc.device_id = device;
  };
  if (cuda_device_ < 0 && nb::hasattr(obj, "__dlpack_device__")) {
    // torch exports a CUDA tensor only while its device is current; the
    // call's device is this one (or the call fails on the mismatch).
    try {
      const nb::object device = obj.attr("__dlpack_device__")();
      const int type = nb::cast<int>(device[0]);
      if (type == kDLCUDA || type == kDLCUDAManaged) use_cuda_device(nb::cast<int>(device[1]));
    } catch (const nb::python_error&) {
    } catch (const nb::cast_error&) {
    }
  }
  auto fail_rank = [&](const auto& a) {
    throw InvalidArgument(std::string("[") + op_ + "] " + name +
                          ".ndim = " + std::to_string(a.ndim()) + " (shape " + shape_of(a) +
                          "): longattn's arrays have at most 4 dims");
  };
  if (!writable) {
    nb::ndarray<nb::ro> a;
    if (!nb::try_cast(obj, a, false))
      throw InvalidArgument(std::string("[") + op_ + "] " + name + " of type " +
                            nb::type_name(obj.type()).c_str() +
                            " is not an array longattn can read in place (it needs __dlpack__ or "
                            "the buffer protocol, and a dtype and device DLPack can describe)" +
                            exporter_says(obj));
    if (!describe(a, d)) fail_rank(a);
    inputs_.push_back(std::move(a));
    as_managed(d);
    return convert(d, name, arrange, bfloat16_bits);
  }
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
  if (!describe(a, d)) fail_rank(a);
  outputs_.push_back(std::move(a));
  as_managed(d);
  return convert(d, name, arrange, bfloat16_bits);
}

TensorView ArraySet::view(nb::handle obj, const std::string& name, Arrange arrange, bool writable) {
  if (obj.is_none()) return {};
  ArrayDesc d;
  if (read_fast(obj, writable, d)) return convert(d, name, arrange, false);
  return import(obj, name, arrange, writable);
}

TensorView ArraySet::input(nb::handle obj, const std::string& name, Arrange arrange) {
  return view(obj, name, arrange, false);
}

TensorView ArraySet::output(nb::handle obj, const std::string& name, Arrange arrange) {
  return view(obj, name, arrange, true);
}

std::string ArraySet::notes_for(const std::string& message) const {
  std::string s;
  for (const Note& n : notes_)
    if (message.find(n.trigger) != std::string::npos) s += (s.empty() ? " (" : "; ") + n.text;
  return s.empty() ? s : s + ")";
}

}  // namespace longattn::py
