// Exit codes and messages for bad arguments and bad files: 2 for usage
// errors, 1 for runtime and file errors, and every message names the culprit.
#include <gtest/gtest.h>

#include <fstream>

#include "cli_test_util.hpp"
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
