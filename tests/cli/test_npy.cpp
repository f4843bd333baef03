// .npy reading and writing: round trips, the header variants NumPy writes,
// and a typed error for every way a file can be malformed.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "cli_test_util.hpp"
#include "half.hpp"
#include "npy.hpp"

namespace longattn::cli {
namespace {

std::vector<std::byte> bytes_of(const std::string& s) {
  std::vector<std::byte> b(s.size());
  std::memcpy(b.data(), s.data(), s.size());
  return b;
}

// A file with the given version and header text (padded as NumPy does) and
// `data_bytes` bytes of payload.
std::vector<std::byte> make_npy(int major, const std::string& dict, std::size_t data_bytes) {
  const std::size_t len_bytes = major == 1 ? 2 : 4;
  std::string header = dict;
  const std::size_t prefix = 8 + len_bytes;
  while ((prefix + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out = std::string("\x93NUMPY", 6) + static_cast<char>(major) + '\0';
  for (std::size_t i = 0; i < len_bytes; ++i)
    out += static_cast<char>((header.size() >> (8 * i)) & 0xff);
  out += header;
  out += std::string(data_bytes, '\0');
  return bytes_of(out);
}

NpyErrorKind kind_of(const std::vector<std::byte>& file, NpyReadOptions opt = {}) {
  try {
    parse_npy(file, "test.npy", opt);
  } catch (const NpyError& e) {
    EXPECT_EQ(e.code(), ErrorCode::io);  // an IoError too, for callers that only know those
    EXPECT_NE(std::string(e.what()).find("test.npy"), std::string::npos) << e.what();
    return e.kind();
  }
  ADD_FAILURE() << "no error";
  return NpyErrorKind::write_failed;
}

TEST(Npy, RoundTripEveryDtype) {
  test::TempDir dir;
  const std::vector<std::int64_t> shape = {2, 3, 5, 7};
  for (DType t : {DType::float32, DType::float16, DType::bfloat16, DType::boolean}) {
    HostArray a(t, shape);
    for (std::size_t i = 0; i < a.data.size(); ++i)
      a.data[i] =
          std::byte{static_cast<unsigned char>((i * 37 + 11) & (t == DType::boolean ? 1 : 0x7f))};
    const std::string path = dir.file(std::string("a_") + dtype_name(t) + ".npy");
    write_npy(path, t, a.shape, a.data.data());
    const HostArray b = read_npy(path, {.u2_is_bf16 = true});
    EXPECT_EQ(b.dtype, t);
    EXPECT_EQ(b.shape, shape);
    EXPECT_EQ(b.data, a.data);
  }
}

TEST(Npy, WrittenHeaderIsAlignedAndLooksLikeNumpys) {
  const float x[3] = {1, 2, 3};
  const std::int64_t shape[1] = {3};
  const auto f = encode_npy(DType::float32, shape, x);
  const std::string head(reinterpret_cast<const char*>(f.data()), f.size() - sizeof x);
  EXPECT_EQ(head.size() % 64, 0u);
  EXPECT_EQ(head.back(), '\n');
  EXPECT_NE(head.find("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }"),
            std::string::npos);
}

TEST(Npy, ReadsVersions2And3AndHeaderVariants) {
  for (int major : {1, 2, 3}) {
    const auto f =
        make_npy(major, "{'descr': '<f2', 'fortran_order': False, 'shape': (4, 2), }", 16);
    const HostArray a = parse_npy(f, "v.npy");
    EXPECT_EQ(a.dtype, DType::float16);
    EXPECT_EQ(a.shape, (std::vector<std::int64_t>{4, 2}));
  }
  // Key order, double quotes, no trailing comma, Python-2 long suffix.
  const auto f =
      make_npy(1, "{\"shape\": (3L,), \"fortran_order\": False, \"descr\": \"<f4\"}", 12);
  EXPECT_EQ(parse_npy(f, "v.npy").shape, (std::vector<std::int64_t>{3}));
  // A scalar and an empty array are valid files.
  EXPECT_EQ(
      parse_npy(make_npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", 4), "s")
          .numel(),
      1);
  EXPECT_EQ(
      parse_npy(make_npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 8), }", 0), "e")
          .numel(),
      0);
  // fortran_order is meaningless for rank 1.
  EXPECT_NO_THROW(
      parse_npy(make_npy(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", 8), "f"));
}

TEST(Npy, Bfloat16Conventions) {
  // ml_dtypes.bfloat16 saves as a 2-byte void; raw bits travel as '<u2'.
  const auto v2 = make_npy(1, "{'descr': '|V2', 'fortran_order': False, 'shape': (2,), }", 4);
  EXPECT_EQ(parse_npy(v2, "v").dtype, DType::bfloat16);
  const auto u2 = make_npy(1, "{'descr': '<u2', 'fortran_order': False, 'shape': (2,), }", 4);
  EXPECT_EQ(kind_of(u2), NpyErrorKind::unsupported_dtype);
  EXPECT_EQ(parse_npy(u2, "u", {.u2_is_bf16 = true}).dtype, DType::bfloat16);
  EXPECT_EQ(npy_descr(DType::bfloat16), "<u2");
  EXPECT_EQ(bf16_to_float(float_to_bf16(1.5f)), 1.5f);
  EXPECT_EQ(f16_to_float(float_to_f16(-0.333251953125f)), -0.333251953125f);
  EXPECT_EQ(f16_to_float(float_to_f16(1e6f)), INFINITY);
  EXPECT_EQ(f16_to_float(float_to_f16(5.96046448e-08f)), 5.96046448e-08f);  // smallest subnormal
}

TEST(Npy, MalformedFilesGiveTypedErrors) {
  const std::string ok = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  auto good = make_npy(1, ok, 24);
  ASSERT_NO_THROW(parse_npy(good, "good"));

  auto truncated = good;
  truncated.resize(truncated.size() - 1);
  EXPECT_EQ(kind_of(truncated), NpyErrorKind::truncated);
  auto head_only = good;
  head_only.resize(20);
  EXPECT_EQ(kind_of(head_only), NpyErrorKind::truncated);
  auto longer = good;
  longer.push_back(std::byte{0});
  EXPECT_EQ(kind_of(longer), NpyErrorKind::trailing_data);

  auto magic = good;
  magic[1] = std::byte{'X'};
  EXPECT_EQ(kind_of(magic), NpyErrorKind::bad_magic);
  EXPECT_EQ(kind_of(bytes_of("hello")), NpyErrorKind::bad_magic);
  auto version = good;
  version[6] = std::byte{9};
  EXPECT_EQ(kind_of(version), NpyErrorKind::bad_version);

  EXPECT_EQ(kind_of(make_npy(1, "{'descr': '<f4', 'shape': (2, 3), }", 24)),
            NpyErrorKind::bad_header);
  EXPECT_EQ(kind_of(make_npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, x), }", 24)),
            NpyErrorKind::bad_header);
  EXPECT_EQ(kind_of(make_npy(1, "not a dict", 24)), NpyErrorKind::bad_header);
  EXPECT_EQ(kind_of(make_npy(1, "{'descr': 5, 'fortran_order': False, 'shape': (2, 3), }", 24)),
            NpyErrorKind::bad_header);

  for (const char* d : {"<f8", ">f4", "<i4", "|u1", "<c8"})
    EXPECT_EQ(
        kind_of(make_npy(
            1, std::string("{'descr': '") + d + "', 'fortran_order': False, 'shape': (2, 3), }",
            48)),
        NpyErrorKind::unsupported_dtype)
        << d;
  EXPECT_EQ(kind_of(make_npy(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 24)),
            NpyErrorKind::fortran_order);

  const HostArray a = parse_npy(good, "good");
  EXPECT_NO_THROW(require_shape(a, std::vector<std::int64_t>{2, 3}, "a"));
  try {
    require_shape(a, std::vector<std::int64_t>{3, 2}, "a.npy");
    ADD_FAILURE();
  } catch (const NpyError& e) {
    EXPECT_EQ(e.kind(), NpyErrorKind::shape_mismatch);
    EXPECT_NE(std::string(e.what()).find("(2, 3)"), std::string::npos) << e.what();
  }
}

TEST(Npy, MissingFileIsAnIoError) { EXPECT_THROW(read_npy("/nonexistent/dir/q.npy"), IoError); }

}  // namespace
}  // namespace longattn::cli
