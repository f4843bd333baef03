// The .npy path end to end: inputs drawn by the test support library written
// as .npy, `longattn run` on them (in-process and through the binary),
// o.npy and lse.npy read back and compared with the float64 reference
// (tests/reference) by the suite's metric and tolerance table.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli_test_util.hpp"
#include "npy.hpp"
#include "support.hpp"

namespace longattn::cli {
namespace {

// Writes the view of a test-support buffer (contiguous in these cases) as .npy.
void write_buffer(const std::string& path, const lt::Buffer& b,
                  const std::vector<std::int64_t>& shape) {
  write_npy(path, b.view.dtype, shape, b.view.data);
}

std::vector<std::int64_t> shape_of(const lt::Buffer& b) {
  return {b.view.shape.begin(), b.view.shape.begin() + b.view.rank};
}

// Copies an array the tool wrote into the matching output view of `b`.
void read_into(const HostArray& a, lt::Buffer& b) {
  ASSERT_EQ(a.dtype, b.view.dtype);
  ASSERT_EQ(a.shape, shape_of(b));
  ASSERT_EQ(a.data.size(), static_cast<std::size_t>(b.view.numel()) * dtype_size(a.dtype));
  std::memcpy(b.view.data, a.data.data(), a.data.size());
}

// Runs `c` through `longattn run` on .npy files holding the inputs the test
// support library draws for it, reads o.npy and lse.npy back into the case's
// output buffers and compares them with the float64 reference
// (tests/reference) by the suite's own metric and tolerance (lt::compare):
// the tool's own check is not consulted. A mask is [Lq, Lk] (boolean, written
// 2-D: NumPy broadcasting) or [1, 1, Lq, Lk] (additive, in the dtype of q);
// with a boolean mask, query row 3 sees no key at all.
void check_case(lt::Case c, std::vector<std::string> extra = {}) {
  test::TempDir dir;
  c.layout = lt::Layout::bhld;
  c.lse = true;
  c.mask_broadcast = {true, true, false, false};
  c.additive_dtype = c.dtype;
  lt::CaseData d(c);
  if (c.mask == lt::MaskKind::boolean)
    for (std::int64_t j = 0; j < c.Lk; ++j) d.set_mask(0, 0, 3, j, 0.0);

  write_buffer(dir.file("q.npy"), d.q, shape_of(d.q));
  write_buffer(dir.file("k.npy"), d.k, shape_of(d.k));
  write_buffer(dir.file("v.npy"), d.v, shape_of(d.v));
  std::vector<std::string> args = {"run",
                                   "--q",
                                   dir.file("q.npy"),
                                   "--k",
                                   dir.file("k.npy"),
                                   "--v",
                                   dir.file("v.npy"),
                                   "--out",
                                   dir.file("o.npy"),
                                   "--lse",
                                   dir.file("lse.npy"),
                                   "--no-progress",
                                   c.causal ? "--causal" : "--no-causal"};
  if (c.dtype == DType::bfloat16) args.push_back("--bf16");
  if (c.mask != lt::MaskKind::none) {
    const std::vector<std::int64_t> shape = c.mask == lt::MaskKind::boolean
                                                ? std::vector<std::int64_t>{c.Lq, c.Lk}
                                                : std::vector<std::int64_t>{1, 1, c.Lq, c.Lk};
    write_buffer(dir.file("m.npy"), d.mask, shape);
    args.insert(args.end(), {"--mask", dir.file("m.npy")});
  }
  if (c.sinks) {
    write_buffer(dir.file("s.npy"), d.sinks, shape_of(d.sinks));
    args.insert(args.end(), {"--sinks", dir.file("s.npy")});
  }
  args.insert(args.end(), extra.begin(), extra.end());

  const auto r = test::run_cli(args);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("plan:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("FLOP/s"), std::string::npos) << r.out;

  read_into(read_npy(dir.file("o.npy"), {.u2_is_bf16 = true}), d.out);
  read_into(read_npy(dir.file("lse.npy")), d.lse);
  const lt::Comparison cmp = lt::compare(d);
  EXPECT_TRUE(cmp.ok) << cmp.message;
}

TEST(CliRun, Float32CausalChunkedGqa) {
  lt::Case c;
  c.Hq = 4, c.Hkv = 2, c.Lq = 37, c.Lk = 100, c.D = 16;
  c.causal = true;
  check_case(c, {"--chunk-keys", "16", "--budget-ms", "0"});
}

TEST(CliRun, Float32BoolMaskSinksLqGreaterThanLk) {
  lt::Case c;
  c.Hq = 4, c.Hkv = 2, c.Lq = 50, c.Lk = 30, c.D = 16;
  c.causal = true;
  c.mask = lt::MaskKind::boolean;
  c.mask_drop = 0.3;
  c.sinks = true;
  c.seed = 2;
  check_case(c, {"--chunk-keys", "7"});
}

TEST(CliRun, Float16AdditiveMaskDifferentVDim) {
  lt::Case c;
  c.Hq = 4, c.Hkv = 1, c.Lq = 37, c.Lk = 100, c.D = 16, c.Dv = 24;
  c.dtype = DType::float16;
  c.mask = lt::MaskKind::additive;
  c.seed = 3;
  check_case(c);
}

TEST(CliRun, Bfloat16RawBitsBatch2) {
  lt::Case c;
  c.B = 2, c.Hq = 4, c.Hkv = 4, c.Lq = 37, c.Lk = 100, c.D = 16;
  c.dtype = DType::bfloat16;
  c.causal = true;
  c.seed = 4;
  check_case(c, {"--chunk-keys", "32"});
}

// Generated inputs: the numbers are checked by the .npy tests above against
// tests/reference; this one checks that the tool's own check runs and can
// fail, and the report and timeline files.
TEST(CliRun, GeneratedInputsRunTheToolsCheckAndWriteReportAndTimeline) {
  test::TempDir dir;
  const std::vector<std::string> args = {"run",
                                         "--heads",
                                         "4",
                                         "--kv-heads",
                                         "1",
                                         "--q-len",
                                         "200",
                                         "--k-len",
                                         "300",
                                         "--head-dim",
                                         "32",
                                         "--mask",
                                         "additive",
                                         "--sinks",
                                         "--chunk-keys",
                                         "64",
                                         "--device",
                                         "cpu",
                                         "--threads",
                                         "2",
                                         "--report",
                                         dir.file("r.json"),
                                         "--timeline",
                                         dir.file("t.svg"),
                                         "--check-rows",
                                         "16"};
  const auto r = test::run_cli(args);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("check: 16 sampled rows"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("PASS"), std::string::npos) << r.out;
  std::ifstream rf(dir.file("r.json"));
  const auto j = nlohmann::json::parse(rf);
  EXPECT_TRUE(j.at("completed").get<bool>());
  EXPECT_GE(j.at("submissions").size(), 1u);
  EXPECT_EQ(j.at("plan").at("num_submissions").get<std::size_t>(), j.at("submissions").size());
  std::ifstream tf(dir.file("t.svg"));
  const std::string svg((std::istreambuf_iterator<char>(tf)), {});
  EXPECT_NE(svg.find("<svg"), std::string::npos);
  EXPECT_NE(svg.find("budget"), std::string::npos);
  // A tolerance no float32 result meets: the check must say FAIL and the
  // exit code must say so too.
  std::vector<std::string> strict = args;
  strict.insert(strict.end(), {"--tolerance", "1e-300"});
  const auto f = test::run_cli(strict);
  EXPECT_NE(f.code, 0) << f.out << f.err;
  EXPECT_NE(f.out.find("FAIL"), std::string::npos) << f.out;
}

TEST(CliRun, PlanPrintsWithoutRunning) {
  const auto r = test::run_cli({"plan", "--q-len", "65536", "--k-len", "65536", "--heads", "32",
                                "--kv-heads", "8", "--budget-ms", "100", "--device", "cpu"});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("plan:"), std::string::npos);
  EXPECT_NE(r.out.find("submission"), std::string::npos);
}

TEST(CliRun, TheBinaryRunsTheNpyPath) {
  test::TempDir dir;
  lt::Case c;
  c.Hq = 2, c.Hkv = 2, c.Lq = 20, c.Lk = 20, c.D = 8;
  c.lse = false;
  lt::CaseData d(c);
  write_buffer(dir.file("q.npy"), d.q, shape_of(d.q));
  write_buffer(dir.file("k.npy"), d.k, shape_of(d.k));
  write_buffer(dir.file("v.npy"), d.v, shape_of(d.v));
  const std::string cmd = std::string(LONGATTN_CLI_PATH) + " run --q " + dir.file("q.npy") +
                          " --k " + dir.file("k.npy") + " --v " + dir.file("v.npy") + " --out " +
                          dir.file("o.npy") + " --no-causal > " + dir.file("log.txt") + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  read_into(read_npy(dir.file("o.npy")), d.out);
  const lt::Comparison cmp = lt::compare(d);
  EXPECT_TRUE(cmp.ok) << cmp.message;
  const std::string bad = std::string(LONGATTN_CLI_PATH) + " run --heads 0 > /dev/null 2>&1";
  const int status = std::system(bad.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 2);
}

}  // namespace
}  // namespace longattn::cli
