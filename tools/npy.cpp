// NumPy .npy reader and writer. The header is a Python dict literal such as
//   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 8, 128), }
// padded with spaces to a 64-byte boundary and ended by '\n'. We parse that
// literal with a small recursive-descent reader rather than pattern matching,
// so that key order, spacing and quote style do not matter (NumPy promises
// none of them).
#include "npy.hpp"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <variant>

namespace longattn::cli {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr std::size_t kMagicLen = 6;

[[noreturn]] void fail(NpyErrorKind kind, const std::string& name, const std::string& msg) {
  throw NpyError(kind, "[longattn] " + name + ": " + msg);
}

using Shape = std::vector<std::int64_t>;
using Value = std::variant<std::string, bool, Shape>;

// Reads the header dict. Values are strings, True/False, or tuples of ints.
class HeaderParser {
 public:
  HeaderParser(std::string_view text, const std::string& name) : s_(text), name_(name) {}

  std::map<std::string, Value> dict() {
    std::map<std::string, Value> out;
    expect('{');
    while (true) {
      skip_ws();
      if (peek() == '}') break;
      std::string key = string_lit();
      expect(':');
      out[key] = value();
      skip_ws();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      if (peek() != '}') bad("expected ',' or '}'");
    }
    expect('}');
    skip_ws();
    if (i_ != s_.size()) bad("unexpected text after the header dict");
    return out;
  }

 private:
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r'))
      ++i_;
  }
  void expect(char c) {
    skip_ws();
    if (peek() != c) bad(std::string("expected '") + c + "'");
    ++i_;
  }
  [[noreturn]] void bad(const std::string& what) const {
    fail(NpyErrorKind::bad_header, name_,
         "bad .npy header (" + what + " at offset " + std::to_string(i_) +
             "): " + std::string(s_.substr(0, 120)));
  }
  std::string string_lit() {
    skip_ws();
    const char q = peek();
    if (q != '\'' && q != '"') bad("expected a quoted string");
    const std::size_t end = s_.find(q, i_ + 1);
    if (end == std::string_view::npos) bad("unterminated string");
    std::string out(s_.substr(i_ + 1, end - i_ - 1));
    i_ = end + 1;
    return out;
  }
  Value value() {
    skip_ws();
    const char c = peek();
    if (c == '\'' || c == '"') return string_lit();
    if (s_.substr(i_, 4) == "True") {
      i_ += 4;
      return true;
    }
    if (s_.substr(i_, 5) == "False") {
      i_ += 5;
      return false;
    }
    if (c == '(' || c == '[') return tuple(c == '(' ? ')' : ']');
    bad("expected a string, True, False or a tuple");
  }
  Shape tuple(char close) {
    ++i_;
    Shape out;
    while (true) {
      skip_ws();
      if (peek() == close) break;
      out.push_back(integer());
      skip_ws();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      if (peek() != close) bad("expected ',' or the end of the shape tuple");
    }
    ++i_;
    return out;
  }
  std::int64_t integer() {
    skip_ws();
    std::int64_t v = 0;
    std::size_t digits = 0;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') {
      if (v > (std::numeric_limits<std::int64_t>::max() - 9) / 10) bad("dimension too large");
      v = v * 10 + (s_[i_] - '0');
      ++i_;
      ++digits;
    }
    if (peek() == 'L') ++i_;  // Python 2 long suffix, still found in old files
    if (digits == 0) bad("expected a non-negative integer");
    return v;
  }

  std::string_view s_;
  std::size_t i_ = 0;
  const std::string& name_;
};

DType dtype_from_descr(const std::string& descr, const NpyReadOptions& opt,
                       const std::string& name) {
  if (descr == "<f4") return DType::float32;
  if (descr == "<f2") return DType::float16;
  if (descr == "|b1") return DType::boolean;
  if (descr == "|V2" || descr == "<V2") return DType::bfloat16;
  if (descr == "<u2") {
    if (opt.u2_is_bf16) return DType::bfloat16;
    fail(NpyErrorKind::unsupported_dtype, name,
         "dtype '<u2' (uint16) is not a float type; if it holds bfloat16 bits, pass --bf16");
  }
  std::string hint;
  if (descr == "<f8") hint = " (convert with .astype(np.float32))";
  if (!descr.empty() && descr[0] == '>') hint = " (big-endian; convert with .astype('<f4'))";
  fail(NpyErrorKind::unsupported_dtype, name,
       "unsupported dtype '" + descr + "'" + hint +
           "; supported: '<f4', '<f2', bfloat16 as '|V2' or '<u2' with --bf16, '|b1' for masks");
}

std::string shape_str(std::span<const std::int64_t> s) {
  std::string out = "(";
  for (std::size_t i = 0; i < s.size(); ++i) {
    out += std::to_string(s[i]);
    if (i + 1 < s.size() || s.size() == 1) out += ",";
    if (i + 1 < s.size()) out += " ";
  }
  return out + ")";
}

}  // namespace

const char* npy_error_kind_name(NpyErrorKind k) {
  switch (k) {
    case NpyErrorKind::open_failed:
      return "open_failed";
    case NpyErrorKind::bad_magic:
      return "bad_magic";
    case NpyErrorKind::bad_version:
      return "bad_version";
    case NpyErrorKind::bad_header:
      return "bad_header";
    case NpyErrorKind::unsupported_dtype:
      return "unsupported_dtype";
    case NpyErrorKind::fortran_order:
      return "fortran_order";
    case NpyErrorKind::truncated:
      return "truncated";
    case NpyErrorKind::trailing_data:
      return "trailing_data";
    case NpyErrorKind::shape_mismatch:
      return "shape_mismatch";
    case NpyErrorKind::write_failed:
      return "write_failed";
  }
  return "unknown";
}

HostArray parse_npy(std::span<const std::byte> bytes, const std::string& name,
                    const NpyReadOptions& options) {
  if (bytes.size() < kMagicLen + 2 || std::memcmp(bytes.data(), kMagic, kMagicLen) != 0)
    fail(NpyErrorKind::bad_magic, name, "not a .npy file (missing the \\x93NUMPY magic)");
  const auto major = static_cast<unsigned>(bytes[6]);
  const auto minor = static_cast<unsigned>(bytes[7]);
  if (major < 1 || major > 3 || minor != 0)
    fail(NpyErrorKind::bad_version, name,
         "unsupported .npy format version " + std::to_string(major) + "." + std::to_string(minor) +
             " (1.0, 2.0 and 3.0 are supported)");
  // Version 1.0 stores the header length in 2 bytes, 2.0 and 3.0 in 4.
  const std::size_t len_bytes = major == 1 ? 2 : 4;
  const std::size_t prefix = kMagicLen + 2 + len_bytes;
  if (bytes.size() < prefix) fail(NpyErrorKind::truncated, name, "file ends inside the header");
  std::size_t header_len = 0;
  for (std::size_t i = 0; i < len_bytes; ++i)
    header_len |= static_cast<std::size_t>(bytes[8 + i]) << (8 * i);
  if (bytes.size() < prefix + header_len)
    fail(NpyErrorKind::truncated, name,
         "file ends inside the header (header says " + std::to_string(header_len) + " bytes)");
  const std::string_view header(reinterpret_cast<const char*>(bytes.data()) + prefix, header_len);

  auto dict = HeaderParser(header, name).dict();
  auto get = [&](const char* key) -> const Value& {
    auto it = dict.find(key);
    if (it == dict.end())
      fail(NpyErrorKind::bad_header, name, std::string("header has no '") + key + "' key");
    return it->second;
  };
  const auto* descr = std::get_if<std::string>(&get("descr"));
  const auto* fortran = std::get_if<bool>(&get("fortran_order"));
  const auto* shape = std::get_if<Shape>(&get("shape"));
  if (!descr || !fortran || !shape)
    fail(NpyErrorKind::bad_header, name, "header keys have the wrong types");

  HostArray a;
  a.dtype = dtype_from_descr(*descr, options, name);
  if (*fortran && shape->size() > 1)
    fail(NpyErrorKind::fortran_order, name,
         "fortran_order is True; save a C-ordered array (np.ascontiguousarray)");
  a.shape = *shape;

  // Guard the size product against overflow before trusting it.
  const std::size_t item = dtype_size(a.dtype);
  std::size_t need = item;
  for (auto d : a.shape) {
    if (d != 0 && need > std::numeric_limits<std::size_t>::max() / static_cast<std::size_t>(d))
      fail(NpyErrorKind::bad_header, name, "shape " + shape_str(a.shape) + " is too large");
    need *= static_cast<std::size_t>(d);
  }
  const std::size_t have = bytes.size() - prefix - header_len;
  if (have < need)
    fail(NpyErrorKind::truncated, name,
         "truncated: shape " + shape_str(a.shape) + " " + *descr + " needs " +
             std::to_string(need) + " data bytes, file has " + std::to_string(have));
  if (have > need)
    fail(NpyErrorKind::trailing_data, name,
         std::to_string(have - need) + " bytes after the data of shape " + shape_str(a.shape));
  a.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(prefix + header_len), bytes.end());
  return a;
}

HostArray read_npy(const std::string& path, const NpyReadOptions& options) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) fail(NpyErrorKind::open_failed, path, "cannot open for reading");
  const auto size = static_cast<std::size_t>(f.tellg());
  f.seekg(0);
  std::vector<std::byte> buf(size);
  if (!f.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(size)))
    fail(NpyErrorKind::open_failed, path, "read failed");
  return parse_npy(buf, path, options);
}

std::string npy_descr(DType dtype) {
  switch (dtype) {
    case DType::float32:
      return "<f4";
    case DType::float16:
      return "<f2";
    case DType::bfloat16:
      return "<u2";
    case DType::boolean:
      return "|b1";
  }
  throw InvalidArgument("[longattn] npy_descr: unknown dtype");
}

std::vector<std::byte> encode_npy(DType dtype, std::span<const std::int64_t> shape,
                                  const void* data) {
  std::string header = "{'descr': '" + npy_descr(dtype) +
                       "', 'fortran_order': False, 'shape': " + shape_str(shape) + ", }";
  // Pad so that magic + version + length + header is a multiple of 64 and
  // the header ends with '\n', as NumPy's writer does (aligned data).
  const bool v1 = header.size() + 1 + 10 <= 65535;
  const std::size_t prefix = v1 ? 10 : 12;
  const std::size_t total = (prefix + header.size() + 1 + 63) / 64 * 64;
  header.append(total - prefix - header.size() - 1, ' ');
  header.push_back('\n');

  std::size_t n = dtype_size(dtype);
  for (auto d : shape) n *= static_cast<std::size_t>(d);
  std::vector<std::byte> out(prefix + header.size() + n);
  std::memcpy(out.data(), kMagic, kMagicLen);
  out[6] = std::byte{static_cast<unsigned char>(v1 ? 1 : 2)};
  out[7] = std::byte{0};
  for (std::size_t i = 0; i < prefix - 8; ++i)
    out[8 + i] = std::byte{static_cast<unsigned char>((header.size() >> (8 * i)) & 0xff)};
  std::memcpy(out.data() + prefix, header.data(), header.size());
  if (n) std::memcpy(out.data() + prefix + header.size(), data, n);
  return out;
}

void write_npy(const std::string& path, DType dtype, std::span<const std::int64_t> shape,
               const void* data) {
  const auto bytes = encode_npy(dtype, shape, data);
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) fail(NpyErrorKind::write_failed, path, "cannot open for writing");
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!f) fail(NpyErrorKind::write_failed, path, "write failed");
}

void require_shape(const HostArray& a, std::span<const std::int64_t> want,
                   const std::string& what) {
  if (!std::equal(a.shape.begin(), a.shape.end(), want.begin(), want.end()))
    fail(NpyErrorKind::shape_mismatch, what,
         "shape " + shape_str(a.shape) + " does not match the expected " + shape_str(want));
}

}  // namespace longattn::cli
