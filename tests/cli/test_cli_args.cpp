// Exit codes and messages for bad arguments and bad files: 2 for usage
// errors, 1 for runtime and file errors, and every message names the culprit.
#include <gtest/gtest.h>

#include <cctype>
#include <filesystem>
#include <fstream>

#include "cli_test_util.hpp"
#include "messages.hpp"
#include "npy.hpp"

namespace longattn::cli {
namespace {

using test::run_cli;

TEST(CliArgs, HelpExitsZeroAndDocumentsBf16) {
  for (const char* sub : {"run", "plan", "calibrate"}) {
    const auto r = run_cli({sub, "--help"});
    EXPECT_EQ(r.code, 0) << sub;
    EXPECT_NE(r.out.find("--"), std::string::npos) << sub;
  }
  const auto r = run_cli({"run", "--help"});
  EXPECT_NE(r.out.find("--budget-ms"), std::string::npos);
  EXPECT_NE(r.out.find("'<u2'"), std::string::npos);
  EXPECT_EQ(run_cli({"--help"}).code, 0);
}

TEST(CliArgs, UsageErrorsExitTwo) {
  const std::vector<std::vector<std::string>> bad = {
      {},                                          // no subcommand
      {"frobnicate"},                              // unknown subcommand
      {"run", "--no-such-option"},                 // unknown option
      {"run", "--heads", "0"},                     // not positive
      {"run", "--heads", "abc"},                   // not a number
      {"run", "--dtype", "f64"},                   // unknown dtype
      {"run", "--device", "tpu"},                  // unknown device
      {"run", "--safety", "3"},                    // out of range
      {"run", "--heads", "6", "--kv-heads", "4"},  // Hkv does not divide Hq (library check)
      {"run", "--mask", "sometimes"},              // neither a kind nor (without --q) a file
      {"run", "--k", "k.npy"},                     // file options without --q
      {"run", "--q", "q.npy"},                     // --q without --k/--v/--out
      {"run", "--sinks", "s.npy"},                 // sinks file without --q
      {"plan", "--mask", "bool", "--heads", "5", "--kv-heads", "2"},
      {"calibrate", "--reps", "0"},
  };
  for (const auto& args : bad) {
    const auto r = run_cli(args);
    std::string joined;
    for (const auto& a : args) joined += a + " ";
    EXPECT_EQ(r.code, 2) << joined << "\n" << r.out << r.err;
    EXPECT_FALSE(r.err.empty()) << joined;
  }
}

TEST(CliArgs, LibraryArgumentErrorsNameTheValue) {
  const auto r = run_cli({"run", "--heads", "6", "--kv-heads", "4"});
  EXPECT_NE(r.err.find("6"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("4"), std::string::npos) << r.err;
}

TEST(CliArgs, CudaWithoutCudaIsAUsageErrorNamingWhy) {
  if (cuda_device_present()) GTEST_SKIP() << "a CUDA device is present";
  const auto r = run_cli({"run", "--device", "cuda", "--q-len", "8", "--k-len", "8"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--device cuda"), std::string::npos) << r.err;
  // Without a GPU (and so usually without a driver) the CUDA runtime says
  // "driver version is insufficient"; the tool says there is no device.
  EXPECT_NE(r.err.find("no CUDA"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("insufficient"), std::string::npos) << r.err;
}

// CLI11's own message for a bad --device was "Check nope value in {auto->"
// and stopped there: the enum's values printed as raw bytes, a NUL first.
// A CPU-only build says --device, not the library's "backend =".
TEST(CliArgs, DeviceNamesAreCheckedWithAPlainMessage) {
  for (const char* sub : {"run", "plan", "calibrate"}) {
    const auto r = run_cli({sub, "--device", "nope"});
    EXPECT_EQ(r.code, 2) << sub << "\n" << r.err;
    EXPECT_NE(r.err.find("--device: nope is not a device: expected auto, cpu or cuda"),
              std::string::npos)
        << r.err;
    EXPECT_EQ(r.err.find('\0'), std::string::npos) << r.err;
  }
  const auto upper = run_cli({"plan", "--device", "CPU", "--q-len", "8", "--k-len", "8"});
  EXPECT_EQ(upper.code, 0) << upper.err;
  EXPECT_NE(upper.out.find(" on cpu"), std::string::npos) << upper.out;
  const auto cuda = run_cli({"plan", "--device", "cuda", "--q-len", "8", "--k-len", "8"});
  if (cuda.code != 0) {
    EXPECT_NE(cuda.err.find("--device cuda"), std::string::npos) << cuda.err;
    EXPECT_EQ(cuda.err.find("backend ="), std::string::npos) << cuda.err;
  }
}

// A bad --profile was named as the library's "path = 'p.json'", a directory
// as "basic_filebuf::underflow error reading the file" with no name at all,
// and `run` read every input before loading it.
TEST(CliArgs, BadProfilesAreNamedByFlagBeforeAnyInputIsRead) {
  test::TempDir dir;
  const std::string bad = dir.file("bad.json");
  std::ofstream(bad) << "{\"format\": \"longattn-profile-1\"";
  for (const std::string& path : {bad, dir.file(""), dir.file("missing.json")}) {
    for (const char* sub : {"run", "plan"}) {
      const auto r = run_cli({sub, "--profile", path, "--q-len", "8", "--k-len", "8"});
      EXPECT_EQ(r.code, 1) << sub << " " << path << "\n" << r.err;
      EXPECT_EQ(r.err.rfind("longattn: ", 0), 0u) << r.err;
      EXPECT_NE(r.err.find("--profile " + path), std::string::npos) << r.err;
      EXPECT_EQ(r.err.find("path = "), std::string::npos) << r.err;
      EXPECT_EQ(r.out.find("longattn run:"), std::string::npos) << r.out;
    }
  }
  const auto files =
      run_cli({"run", "--profile", bad, "--q", dir.file("no_q.npy"), "--k", dir.file("k.npy"),
               "--v", dir.file("v.npy"), "--out", dir.file("o.npy")});
  EXPECT_NE(files.err.find("--profile " + bad), std::string::npos) << files.err;
}

// --check-rows past the number of rows drew that many samples with repeats:
// 1e12 built a vector of 1e12 picks (out of memory). Now every row is
// compared once, and the line says so.
TEST(CliArgs, CheckRowsBeyondTheRowCountChecksEachRowOnce) {
  const auto r = run_cli({"run", "--q-len", "8", "--k-len", "8", "--heads", "2", "--kv-heads", "1",
                          "--head-dim", "8", "--check-rows", "2000000", "--no-progress"});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("check: all 16 rows vs float64 reference"), std::string::npos) << r.out;
}

// The thread count reaches OpenMP: 65536 crashed it, 50000 failed thread
// creation. Out of range is a usage error naming the flag, for every
// subcommand that takes it.
TEST(CliArgs, ThreadsOutOfRangeIsAUsageError) {
  for (const char* sub : {"run", "plan", "calibrate"})
    for (const char* n : {"65536", "1025", "-1"}) {
      const auto r = run_cli({sub, "--threads", n});
      EXPECT_EQ(r.code, 2) << sub << " " << n << "\n" << r.out << r.err;
      EXPECT_NE(r.err.find("--threads"), std::string::npos) << r.err;
      EXPECT_NE(r.err.find("1024"), std::string::npos) << r.err;  // says the allowed range
    }
  const auto ok = run_cli({"run", "--threads", "1024", "--q-len", "8", "--k-len", "8", "--heads",
                           "2", "--kv-heads", "1", "--head-dim", "8", "--check-rows", "0"});
  EXPECT_EQ(ok.code, 0) << ok.out << ok.err;
}

bool has_digit_run(const std::string& s, std::size_t n) {
  std::size_t run = 0;
  for (char c : s) {
    run = std::isdigit(static_cast<unsigned char>(c)) ? run + 1 : 0;
    if (run >= n) return true;
  }
  return false;
}

// CLI11 clamped 99999999999999999999 to INT64_MAX without a word, and its
// range messages printed the largest double in full (309 digits).
TEST(CliArgs, OutOfRangeNumbersAreShortUsageErrorsNamingTheFlag) {
  const std::vector<std::vector<std::string>> bad = {
      {"run", "--q-len", "99999999999999999999"},
      {"run", "--k-len", "-99999999999999999999"},
      {"run", "--heads", "1e3"},
      {"run", "--seed", "99999999999999999999"},
      {"run", "--budget-ms", "1e400"},
      {"run", "--budget-ms", "nan"},
      {"run", "--budget-ms", "-1"},
      {"run", "--safety", "3"},
      {"run", "--workspace-mb", "0"},
      {"run", "--workspace-mb", "1e300"},
      {"run", "--tolerance", "inf"},
      {"run", "--repeat", "4294967296"},
      {"plan", "--chunk-keys", "99999999999999999999"},
      {"calibrate", "--reps", "99999999999999999999"},
      {"calibrate", "--head-dims", "64", "99999999999999999999"},
      {"run", "--q-len", std::string(300, '9')},
  };
  for (const auto& args : bad) {
    const auto r = run_cli(args);
    const std::string& flag = args[1];
    EXPECT_EQ(r.code, 2) << flag << " " << args.back() << "\n" << r.out << r.err;
    EXPECT_NE(r.err.find(flag + ":"), std::string::npos) << r.err;
    EXPECT_FALSE(has_digit_run(r.err, 30)) << r.err;
    EXPECT_LT(r.err.size(), 300u) << r.err;
  }
  // In range, with forms CLI11 would read differently: "010" is ten, not
  // octal eight.
  const auto r = run_cli({"plan", "--q-len", "010", "--k-len", "+16", "--budget-ms", "0"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("Lq=10 "), std::string::npos) << r.out;
}

// The help text showed CLI11's "--causal,--no-causal{false}": off by default
// to the eye, although generated runs are causal. Files default to no mask.
TEST(CliArgs, HelpStatesTheCausalDefaults) {
  const auto r = run_cli({"run", "--help"});
  ASSERT_EQ(r.code, 0);
  EXPECT_EQ(r.out.find("{false}"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("on for generated inputs; off with --q files"), std::string::npos) << r.out;
  EXPECT_EQ(run_cli({"run", "--causal", "--no-causal"}).code, 2);
}

// Messages are "longattn: <what>", once; they name the flags the user typed
// rather than the library's fields.
TEST(CliArgs, MessagesNameFlagsNotLibraryFields) {
  const auto hd = run_cli({"run", "--head-dim", "300", "--q-len", "8", "--k-len", "8"});
  EXPECT_EQ(hd.code, 2);
  EXPECT_NE(hd.err.find("--head-dim 300"), std::string::npos) << hd.err;
  EXPECT_EQ(hd.err.find("q.shape"), std::string::npos) << hd.err;
  EXPECT_EQ(hd.err.find("[longattn"), std::string::npos) << hd.err;

  const auto gqa = run_cli({"plan", "--heads", "6", "--kv-heads", "4"});
  EXPECT_EQ(gqa.code, 2);
  EXPECT_NE(gqa.err.find("--kv-heads 4 does not divide --heads 6"), std::string::npos) << gqa.err;

  test::TempDir dir;
  const auto missing = run_cli({"run", "--q", dir.file("no_q.npy"), "--k", dir.file("k.npy"), "--v",
                                dir.file("v.npy"), "--out", dir.file("o.npy")});
  EXPECT_EQ(missing.code, 1);
  EXPECT_EQ(missing.err.rfind("longattn: " + dir.file("no_q.npy"), 0), 0u) << missing.err;
  EXPECT_EQ(missing.err.find("[longattn"), std::string::npos) << missing.err;
}

TEST(CliArgs, MessagesMapPolicyFieldsToFlags) {
  EXPECT_EQ(
      in_flag_terms("[longattn::plan] policy.budget_ms = 0.001 is too small", FieldNames::policy),
      "--budget-ms 0.001 is too small");
  EXPECT_EQ(in_flag_terms("(policy.fixed_chunk_keys = 4, policy.workspace_limit_bytes = 2097152)",
                          FieldNames::policy),
            "(--chunk-keys 4, --workspace-mb 2)");
  EXPECT_EQ(in_flag_terms("budget_ms = 2 cannot be kept", FieldNames::policy),
            "--budget-ms 2 cannot be kept");
  // Shapes map only when they came from flags; prose is left alone.
  EXPECT_EQ(in_flag_terms("q.shape[3] = 300 (head dim)", FieldNames::policy),
            "q.shape[3] = 300 (head dim)");
  EXPECT_EQ(in_flag_terms("q.shape[3] = 300 (head dim)", FieldNames::policy_and_shape),
            "--head-dim 300 (head dim)");
  EXPECT_EQ(in_flag_terms("2 threads available", FieldNames::policy), "2 threads available");
}

// --head-dims 300 measured nothing, wrote an empty profile and exited 0.
TEST(CliArgs, CalibrateRejectsUnsupportedHeadDimsAndWritesNothing) {
  test::TempDir dir;
  const std::string out = dir.file("p.json");
  const auto r = run_cli(
      {"calibrate", "--head-dims", "64", "300", "--dtypes", "f32", "--device", "cpu", "-o", out});
  EXPECT_EQ(r.code, 2) << r.out << r.err;
  EXPECT_NE(r.err.find("--head-dims 300"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(out));
  EXPECT_EQ(r.out.find("longattn calibrate"), std::string::npos) << "measured before checking";
}

class CliBadFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::vector<float> z(2 * 2 * 8 * 4, 0.5f);
    for (const char* n : {"q", "k", "v"})
      write_npy(dir.file(std::string(n) + ".npy"), DType::float32,
                std::vector<std::int64_t>{1, 2, 8, 4}, z.data());
  }
  test::CliResult run_with(const std::string& q, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"run",
                                     "--q",
                                     q,
                                     "--k",
                                     dir.file("k.npy"),
                                     "--v",
                                     dir.file("v.npy"),
                                     "--out",
                                     dir.file("o.npy")};
    args.insert(args.end(), extra.begin(), extra.end());
    return run_cli(args);
  }
  void write_raw(const std::string& name, const std::string& bytes) {
    std::ofstream(dir.file(name), std::ios::binary) << bytes;
  }
  test::TempDir dir;
};

TEST_F(CliBadFiles, GoodFilesRun) {
  const auto r = run_with(dir.file("q.npy"));
  EXPECT_EQ(r.code, 0) << r.out << r.err;
}

TEST_F(CliBadFiles, BadFilesExitOneNamingThePath) {
  const std::vector<float> z(2 * 8 * 8, 0.f);  // large enough for every shape written below
  // Wrong shape: q's head dim differs from k's.
  write_npy(dir.file("q_dim.npy"), DType::float32, std::vector<std::int64_t>{1, 2, 8, 8}, z.data());
  // Wrong rank.
  write_npy(dir.file("q_rank.npy"), DType::float32, std::vector<std::int64_t>{2, 8, 4}, z.data());
  // Wrong dtype: float16 q with float32 k, v.
  write_npy(dir.file("q_f16.npy"), DType::float16, std::vector<std::int64_t>{1, 2, 8, 4}, z.data());
  // Truncated, bad magic, Fortran order.
  {
    std::ifstream f(dir.file("q.npy"), std::ios::binary);
    std::string s((std::istreambuf_iterator<char>(f)), {});
    write_raw("q_trunc.npy", s.substr(0, s.size() - 5));
    write_raw("q_magic.npy", "PK" + s.substr(2));
    std::string fo = s;
    fo.replace(fo.find("False"), 5, "True ");
    write_raw("q_fortran.npy", fo);
  }
  for (const char* name : {"q_dim.npy", "q_rank.npy", "q_f16.npy", "q_trunc.npy", "q_magic.npy",
                           "q_fortran.npy", "missing.npy"}) {
    const auto r = run_with(dir.file(name));
    EXPECT_EQ(r.code, 1) << name << "\n" << r.out << r.err;
    EXPECT_NE(r.err.find(name), std::string::npos) << r.err;
  }
}

TEST_F(CliBadFiles, BadMaskAndSinksFilesExitOne) {
  const std::vector<float> z(64, 0.f);
  write_npy(dir.file("m.npy"), DType::float32, std::vector<std::int64_t>{3, 8}, z.data());
  write_npy(dir.file("s.npy"), DType::float32, std::vector<std::int64_t>{3}, z.data());
  EXPECT_EQ(run_with(dir.file("q.npy"), {"--mask", dir.file("m.npy")}).code, 1);
  EXPECT_EQ(run_with(dir.file("q.npy"), {"--sinks", dir.file("s.npy")}).code, 1);
}

}  // namespace
}  // namespace longattn::cli
