// NumPy .npy reader and writer. The header is a Python dict literal such as
//   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 8, 128), }
// padded with spaces to a 64-byte boundary and ended by '\n'. We parse that
// literal with a small recursive-descent reader rather than pattern matching,
// so that key order, spacing and quote style do not matter (NumPy promises
// none of them).
#include "npy.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <variant>

#include "atomic_file.hpp"

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

// NumPy itself refuses headers over 10,000 bytes by default; anything near
// this limit is a damaged or hostile file, not a big array.
constexpr std::size_t kMaxHeaderLen = 1 << 20;

struct Prefix {
  std::size_t size = 0;        // magic + version + length field
  std::size_t header_len = 0;  // the dict text after it
};

// Magic, version and header length from the first bytes of a file.
Prefix read_prefix(std::span<const std::byte> bytes, const std::string& name) {
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
  Prefix p;
  p.size = kMagicLen + 2 + len_bytes;
  if (bytes.size() < p.size) fail(NpyErrorKind::truncated, name, "file ends inside the header");
  for (std::size_t i = 0; i < len_bytes; ++i)
    p.header_len |= static_cast<std::size_t>(bytes[8 + i]) << (8 * i);
  return p;
}

struct Header {
  DType dtype = DType::float32;
  Shape shape;
  std::string descr;
  std::size_t data_bytes = 0;
};

Header parse_header(std::string_view text, const std::string& name, const NpyReadOptions& options) {
  auto dict = HeaderParser(text, name).dict();
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

  Header h;
  h.dtype = dtype_from_descr(*descr, options, name);
  if (*fortran && shape->size() > 1)
    fail(NpyErrorKind::fortran_order, name,
         "fortran_order is True; save a C-ordered array (np.ascontiguousarray)");
  h.shape = *shape;
  h.descr = *descr;
  // Guard the size product against overflow before trusting it.
  h.data_bytes = dtype_size(h.dtype);
  for (auto d : h.shape) {
    if (d != 0 &&
        h.data_bytes > std::numeric_limits<std::size_t>::max() / static_cast<std::size_t>(d))
      fail(NpyErrorKind::bad_header, name, "shape " + shape_str(h.shape) + " is too large");
    h.data_bytes *= static_cast<std::size_t>(d);
  }
  return h;
}

void check_data_size(const Header& h, std::size_t have, const std::string& name) {
  if (have < h.data_bytes)
    fail(NpyErrorKind::truncated, name,
         "truncated: shape " + shape_str(h.shape) + " " + h.descr + " needs " +
             std::to_string(h.data_bytes) + " data bytes, file has " + std::to_string(have));
  if (have > h.data_bytes)
    fail(NpyErrorKind::trailing_data, name,
         std::to_string(have - h.data_bytes) + " bytes after the data of shape " +
             shape_str(h.shape));
}

struct FdCloser {
  int fd;
  ~FdCloser() { ::close(fd); }
};

// Reads until `n` bytes or end of file; returns the count. Retries on EINTR
// (the tool catches SIGINT and SIGTERM).
std::size_t read_up_to(int fd, void* dst, std::size_t n, const std::string& name) {
  auto* p = static_cast<char*>(dst);
  std::size_t done = 0;
  while (done < n) {
    const ssize_t r = ::read(fd, p + done, std::min<std::size_t>(n - done, 1 << 30));
    if (r == 0) break;
    if (r < 0) {
      if (errno == EINTR) continue;
      fail(NpyErrorKind::open_failed, name, std::string("read failed: ") + std::strerror(errno));
    }
    done += static_cast<std::size_t>(r);
  }
  return done;
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
  const Prefix pre = read_prefix(bytes, name);
  if (bytes.size() < pre.size + pre.header_len)
    fail(NpyErrorKind::truncated, name,
         "file ends inside the header (header says " + std::to_string(pre.header_len) + " bytes)");
  const Header h = parse_header(
      std::string_view(reinterpret_cast<const char*>(bytes.data()) + pre.size, pre.header_len),
      name, options);
  check_data_size(h, bytes.size() - pre.size - pre.header_len, name);
  HostArray a(h.dtype, h.shape, name);
  if (!a.data.empty())
    std::memcpy(a.data.data(), bytes.data() + pre.size + pre.header_len, a.data.size());
  return a;
}

// Reads with read(2) rather than a seekable stream, so that pipes and
// process substitution (`--q <(zcat q.npy.gz)`) work as well as files, and
// the data goes straight into the array: a file is held in memory once.
HostArray read_npy(const std::string& path, const NpyReadOptions& options) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    fail(NpyErrorKind::open_failed, path, std::string("cannot open: ") + std::strerror(errno));
  const FdCloser closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0)
    fail(NpyErrorKind::open_failed, path, std::string("cannot stat: ") + std::strerror(errno));
  if (S_ISDIR(st.st_mode)) fail(NpyErrorKind::open_failed, path, "is a directory, not a .npy file");

  // Magic and version (8 bytes), then 2 or 4 bytes of header length.
  std::vector<std::byte> head(12);
  std::size_t got = read_up_to(fd, head.data(), 8, path);
  const std::size_t len_bytes = got == 8 && static_cast<unsigned>(head[6]) == 1 ? 2 : 4;
  if (got == 8) got += read_up_to(fd, head.data() + 8, len_bytes, path);
  head.resize(got);
  const Prefix pre = read_prefix(head, path);
  if (pre.header_len > kMaxHeaderLen)
    fail(NpyErrorKind::bad_header, path,
         "header of " + std::to_string(pre.header_len) + " bytes is implausibly long");
  std::string header(pre.header_len, '\0');
  if (read_up_to(fd, header.data(), header.size(), path) != header.size())
    fail(NpyErrorKind::truncated, path,
         "file ends inside the header (header says " + std::to_string(pre.header_len) + " bytes)");
  const Header h = parse_header(header, path, options);

  // A regular file says its size: check it before allocating, so that a
  // header claiming terabytes over a short file is "truncated", not OOM.
  if (S_ISREG(st.st_mode)) {
    const auto offset = static_cast<std::size_t>(pre.size + pre.header_len);
    const auto size = static_cast<std::size_t>(st.st_size);
    check_data_size(h, size >= offset ? size - offset : 0, path);
  }
  HostArray a(h.dtype, h.shape, path);
  const std::size_t have = read_up_to(fd, a.data.data(), a.data.size(), path);
  if (have < a.data.size()) check_data_size(h, have, path);
  std::byte extra{};
  if (read_up_to(fd, &extra, 1, path) != 0)
    fail(NpyErrorKind::trailing_data, path,
         "more bytes after the data of shape " + shape_str(h.shape));
  return a;
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

// Magic, version, length and the padded header dict for an array: what
// precedes the data. Version 1.0 when the header fits (it always does for
// rank <= 4), else 2.0.
std::string npy_header(DType dtype, std::span<const std::int64_t> shape) {
  std::string header = "{'descr': '" + npy_descr(dtype) +
                       "', 'fortran_order': False, 'shape': " + shape_str(shape) + ", }";
  // Pad so that magic + version + length + header is a multiple of 64 and
  // the header ends with '\n', as NumPy's writer does (aligned data).
  const bool v1 = header.size() + 1 + 10 <= 65535;
  const std::size_t prefix = v1 ? 10 : 12;
  const std::size_t total = (prefix + header.size() + 1 + 63) / 64 * 64;
  header.append(total - prefix - header.size() - 1, ' ');
  header.push_back('\n');
  std::string out(kMagic, kMagicLen);
  out += static_cast<char>(v1 ? 1 : 2);
  out += '\0';
  for (std::size_t i = 0; i < prefix - 8; ++i)
    out += static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return out + header;
}

namespace {

std::size_t data_bytes(DType dtype, std::span<const std::int64_t> shape) {
  std::size_t n = dtype_size(dtype);
  for (auto d : shape) n *= static_cast<std::size_t>(d);
  return n;
}

}  // namespace

std::vector<std::byte> encode_npy(DType dtype, std::span<const std::int64_t> shape,
                                  const void* data) {
  const std::string header = npy_header(dtype, shape);
  const std::size_t n = data_bytes(dtype, shape);
  std::vector<std::byte> out(header.size() + n);
  std::memcpy(out.data(), header.data(), header.size());
  if (n) std::memcpy(out.data() + header.size(), data, n);
  return out;
}

// The header, then the caller's buffer as it is: no encoded copy of the
// data, which for a 1M-token output would be gigabytes.
void write_npy(const std::string& path, DType dtype, std::span<const std::int64_t> shape,
               const void* data) {
  const std::string header = npy_header(dtype, shape);
  const std::size_t n = data_bytes(dtype, shape);
  write_atomically(path, [&](const std::string& tmp) {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    // errno still holds the failing call's reason (EFBIG, ENOSPC, EACCES):
    // the streams keep no error of their own.
    if (!f)
      fail(NpyErrorKind::write_failed, path,
           std::string("cannot open for writing: ") + std::strerror(errno));
    f.write(header.data(), static_cast<std::streamsize>(header.size()));
    if (n) f.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
    f.close();  // a full disk may only show when the last buffer is flushed
    if (!f)
      fail(NpyErrorKind::write_failed, path, std::string("write failed: ") + std::strerror(errno));
  });
}

void require_shape(const HostArray& a, std::span<const std::int64_t> want,
                   const std::string& what) {
  if (!std::equal(a.shape.begin(), a.shape.end(), want.begin(), want.end()))
    fail(NpyErrorKind::shape_mismatch, what,
         "shape " + shape_str(a.shape) + " does not match the expected " + shape_str(want));
}

}  // namespace longattn::cli
