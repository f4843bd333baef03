// Files in and out: inputs that are not regular files (directories, pipes),
// reading a file into memory once, outputs written all or nothing, and every
// output path checked before any work.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <thread>

#include "atomic_file.hpp"
#include "cli_test_util.hpp"
#include "npy.hpp"

namespace longattn::cli {
namespace {

namespace fs = std::filesystem;
using test::run_cli;

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), {});
}

std::vector<std::string> names_in(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// q, k, v of shape [1, 2, L, 4] (Lq may differ) with distinct values.
class CliFiles : public ::testing::Test {
 protected:
  void SetUp() override { write_qkv(8, 8); }
  void write_qkv(std::int64_t lq, std::int64_t lk) {
    auto fill = [](std::int64_t n, float base) {
      std::vector<float> v(static_cast<std::size_t>(n));
      for (std::size_t i = 0; i < v.size(); ++i) v[i] = base + 0.01f * static_cast<float>(i % 97);
      return v;
    };
    const auto q = fill(2 * lq * 4, -0.3f), k = fill(2 * lk * 4, 0.1f), v = fill(2 * lk * 4, 0.7f);
    write_npy(dir.file("q.npy"), DType::float32, std::vector<std::int64_t>{1, 2, lq, 4}, q.data());
    write_npy(dir.file("k.npy"), DType::float32, std::vector<std::int64_t>{1, 2, lk, 4}, k.data());
    write_npy(dir.file("v.npy"), DType::float32, std::vector<std::int64_t>{1, 2, lk, 4}, v.data());
  }
  std::vector<std::string> args(const std::string& q, const std::string& out,
                                const std::vector<std::string>& extra = {}) const {
    std::vector<std::string> a = {
        "run", "--q",          q, "--k", dir.file("k.npy"), "--v", dir.file("v.npy"), "--out",
        out,   "--no-progress"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  test::TempDir dir;
};

// Read as a file of size INT64_MAX before: std::bad_alloc.
TEST_F(CliFiles, DirectoryInputIsRefusedByName) {
  const auto r = run_cli(args(dir.file(""), dir.file("o.npy")));
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("is a directory"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("bad_alloc"), std::string::npos) << r.err;
}

// `--q <(cat q.npy)` said "cannot open for reading": a pipe has no size.
TEST_F(CliFiles, NamedPipeInputIsRead) {
  const std::string fifo = dir.file("q.fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const std::string bytes = slurp(dir.file("q.npy"));
  std::signal(SIGPIPE, SIG_IGN);  // a reader that gives up must not kill the test
  std::thread writer([&] {
    // Non-blocking open fails (ENXIO) until the reader has the FIFO open;
    // retry for a while rather than block forever if it never does.
    int fd = -1;
    for (int i = 0; i < 2000 && fd < 0; ++i) {
      fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
      if (fd < 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (fd < 0) return;
    ::fcntl(fd, F_SETFL, 0);  // blocking writes from here on
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
      if (n <= 0) break;
      done += static_cast<std::size_t>(n);
    }
    ::close(fd);
  });
  const auto r = run_cli(args(fifo, dir.file("o_fifo.npy")));
  writer.join();
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  ASSERT_EQ(run_cli(args(dir.file("q.npy"), dir.file("o_file.npy"))).code, 0);
  EXPECT_EQ(slurp(dir.file("o_fifo.npy")), slurp(dir.file("o_file.npy")));
}

// The reader held the whole file in a buffer and then copied it into the
// array: twice the input in memory. Measured as the growth of the peak
// resident set while reading a 32 MiB file (ctest runs each test in its own
// process, so the peak before is small). A CI machine once had less room in
// its temporary directory than the file needs and the test read a short file;
// the room is checked first and the write is checked after, so a full disk
// says so instead of failing the read.
TEST_F(CliFiles, ReadHoldsTheFileInMemoryOnce) {
  constexpr std::int64_t kElems = 8 << 20;  // 32 MiB of float32
  constexpr double kMib = kElems * 4 / double(1 << 20);
  const std::string path = dir.file("big.npy");
  std::error_code ec;
  const auto room = fs::space(fs::path(path).parent_path(), ec);
  if (!ec && room.available < std::uintmax_t(2 * kElems * 4))
    GTEST_SKIP() << "the temporary directory has " << room.available / (1 << 20)
                 << " MiB free, the test file needs " << kMib;
  {
    // The header, then the data in 1 MiB pieces, so that writing the file
    // does not itself raise the peak.
    const std::string header = npy_header(DType::float32, std::vector<std::int64_t>{kElems});
    std::ofstream f(path, std::ios::binary);
    f << header;
    const std::string zeros(1 << 20, '\0');
    for (std::int64_t written = 0; written < kElems * 4; written += std::ssize(zeros)) f << zeros;
    f.flush();
    if (!f) GTEST_SKIP() << "writing the " << kMib << " MiB test file to " << path << " failed";
  }
  rusage before{}, after{};
  getrusage(RUSAGE_SELF, &before);
  const HostArray a = read_npy(path);
  getrusage(RUSAGE_SELF, &after);
  ASSERT_EQ(a.numel(), kElems);
  const double grown_mib = static_cast<double>(after.ru_maxrss - before.ru_maxrss) / 1024.0;
  EXPECT_LT(grown_mib, kMib * 1.4)
      << "peak grew by " << grown_mib << " MiB reading " << kMib << " MiB";
}

// A header promising terabytes over a few bytes is "truncated", found from
// the file's size before anything is allocated.
TEST_F(CliFiles, HugeShapeOverAShortFileIsTruncatedNotOutOfMemory) {
  const std::string path = dir.file("liar.npy");
  const std::vector<float> x(4, 1.f);
  write_npy(path, DType::float32, std::vector<std::int64_t>{4}, x.data());
  std::string bytes = slurp(path);
  const auto at = bytes.find("(4,)");
  bytes.replace(at, 4, "(1000000000000,)");
  // Keep the header length field honest: pad or trim spaces before '\n'.
  const std::size_t nl = bytes.find('\n');
  const std::size_t grow = std::string("(1000000000000,)").size() - 4;
  bytes.erase(nl - grow, grow);
  std::ofstream(path, std::ios::binary) << bytes;
  try {
    read_npy(path);
    FAIL() << "no error";
  } catch (const NpyError& e) {
    EXPECT_EQ(e.kind(), NpyErrorKind::truncated) << e.what();
  }
}

TEST(AtomicFile, AFailedWriteKeepsTheOldFileAndLeavesNoTemporary) {
  test::TempDir dir;
  const std::string path = dir.file("o.txt");
  std::ofstream(path) << "old contents";
  EXPECT_THROW(write_atomically(path,
                                [](const std::string& tmp) {
                                  std::ofstream(tmp) << "half of the new";
                                  throw IoError("disk full");
                                }),
               IoError);
  EXPECT_EQ(slurp(path), "old contents");
  EXPECT_EQ(names_in(dir.file("")), std::vector<std::string>{"o.txt"});

  write_atomically(path, [](const std::string& tmp) { std::ofstream(tmp) << "new"; });
  EXPECT_EQ(slurp(path), "new");
  EXPECT_EQ(names_in(dir.file("")), std::vector<std::string>{"o.txt"});
}

TEST(AtomicFile, KeepsPermissionsAndWritesThroughSymbolicLinks) {
  test::TempDir dir;
  const std::string real = dir.file("real.json"), link = dir.file("link.json");
  std::ofstream(real) << "old";
  fs::permissions(real, fs::perms::owner_read | fs::perms::owner_write);
  fs::create_symlink(real, link);
  write_atomically(link, [](const std::string& tmp) { std::ofstream(tmp) << "new"; });
  EXPECT_TRUE(fs::is_symlink(link));
  EXPECT_EQ(slurp(real), "new");
  EXPECT_EQ(fs::status(real).permissions(), fs::perms::owner_read | fs::perms::owner_write);
}

// A full disk left o.npy truncated behind a valid header, its old contents
// lost. RLIMIT_FSIZE makes writes past 64 KiB fail (EFBIG) as a full disk
// would; the previous o.npy must survive and no temporary file remain.
TEST_F(CliFiles, AFailedOutputWriteKeepsThePreviousFile) {
  write_qkv(4096, 8);  // out: 1 x 2 x 4096 x 4 float32 = 128 KiB
  const std::string out = dir.file("o.npy");
  std::ofstream(out) << "previous result";
  struct Limit {
    rlimit old{};
    Limit() {
      std::signal(SIGXFSZ, SIG_IGN);
      getrlimit(RLIMIT_FSIZE, &old);
      rlimit small = old;
      small.rlim_cur = 64 << 10;
      setrlimit(RLIMIT_FSIZE, &small);
    }
    ~Limit() { setrlimit(RLIMIT_FSIZE, &old); }
  };
  test::CliResult r;
  {
    const Limit limit;
    r = run_cli(args(dir.file("q.npy"), out));
  }
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("o.npy"), std::string::npos) << r.err;
  EXPECT_EQ(slurp(out), "previous result");
  for (const auto& name : names_in(dir.file("")))
    EXPECT_EQ(name.find("longattn-"), std::string::npos) << "temporary file left: " << name;
}

// A bad --report directory failed after the whole run, and a bad --lse
// after o.npy was written. Now both fail before any input is read.
TEST_F(CliFiles, OutputPathsAreCheckedBeforeAnyWork) {
  const std::string nodir = dir.file("no_such_dir");
  for (const char* flag : {"--report", "--timeline", "--save-profile"}) {
    const auto r = run_cli({"run", "--q-len", "64", "--k-len", "64", flag, nodir + "/x"});
    EXPECT_EQ(r.code, 1) << flag << "\n" << r.out << r.err;
    EXPECT_NE(r.err.find(flag), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("does not exist"), std::string::npos) << r.err;
    EXPECT_EQ(r.out.find("longattn run:"), std::string::npos) << "ran before failing: " << r.out;
  }
  const auto lse = run_cli(args(dir.file("q.npy"), dir.file("o.npy"), {"--lse", nodir + "/l.npy"}));
  EXPECT_EQ(lse.code, 1);
  EXPECT_NE(lse.err.find("--lse"), std::string::npos) << lse.err;
  EXPECT_FALSE(fs::exists(dir.file("o.npy")));
  const auto is_dir = run_cli(args(dir.file("q.npy"), dir.file("")));
  EXPECT_EQ(is_dir.code, 1);
  EXPECT_NE(is_dir.err.find("is a directory"), std::string::npos) << is_dir.err;
}

TEST_F(CliFiles, OutputsMustBeDistinctFilesAndNotInputs) {
  const std::string o = dir.file("o.npy");
  const std::string o_alias = dir.file("sub/../o.npy");
  fs::create_directory(dir.file("sub"));
  const std::vector<std::vector<std::string>> extra_args = {
      {"--lse", o}, {"--lse", o_alias}, {"--report", o}, {"--timeline", o}, {"--save-profile", o}};
  for (const auto& extra : extra_args) {
    const auto r = run_cli(args(dir.file("q.npy"), o, extra));
    EXPECT_EQ(r.code, 2) << extra[0] << " " << extra[1] << "\n" << r.out << r.err;
    EXPECT_NE(r.err.find("--out and " + extra[0]), std::string::npos) << r.err;
  }
  const auto onto_input = run_cli(args(dir.file("q.npy"), dir.file("k.npy")));
  EXPECT_EQ(onto_input.code, 2);
  EXPECT_NE(onto_input.err.find("--k"), std::string::npos) << onto_input.err;
  EXPECT_FALSE(fs::exists(o));
  // A hard link is the same file under another name.
  fs::create_hard_link(dir.file("v.npy"), dir.file("v_link.npy"));
  EXPECT_EQ(run_cli(args(dir.file("q.npy"), dir.file("v_link.npy"))).code, 2);
  // Refining a profile in place is allowed.
  const std::string prof = dir.file("p.json");
  ASSERT_EQ(run_cli({"run", "--q-len", "32", "--k-len", "32", "--check-rows", "0", "--save-profile",
                     prof})
                .code,
            0);
  const auto refine = run_cli({"run", "--q-len", "32", "--k-len", "32", "--check-rows", "0",
                               "--profile", prof, "--save-profile", prof});
  EXPECT_EQ(refine.code, 0) << refine.err;
  EXPECT_EQ(run_cli({"plan", "--json", prof, "--profile", prof}).code, 2);
}

// "bool.npy: dtype boolean does not match bool.npy's boolean".
TEST_F(CliFiles, BoolQueryFileSaysItIsNotAFloatType) {
  const std::vector<std::uint8_t> b(2 * 8 * 4, 1);
  write_npy(dir.file("bool.npy"), DType::boolean, std::vector<std::int64_t>{1, 2, 8, 4}, b.data());
  const auto r = run_cli(args(dir.file("bool.npy"), dir.file("o.npy")));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("bool.npy: dtype boolean is not a float type"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("does not match"), std::string::npos) << r.err;
}

// PyTorch's and MLX's attention mask nothing unless asked; so do files.
TEST_F(CliFiles, FileInputsDefaultToNoMask) {
  const auto plain = run_cli(args(dir.file("q.npy"), dir.file("o.npy")));
  ASSERT_EQ(plain.code, 0) << plain.err;
  EXPECT_NE(plain.out.find(" full "), std::string::npos) << plain.out;
  ASSERT_EQ(run_cli(args(dir.file("q.npy"), dir.file("o_full.npy"), {"--no-causal"})).code, 0);
  ASSERT_EQ(run_cli(args(dir.file("q.npy"), dir.file("o_causal.npy"), {"--causal"})).code, 0);
  EXPECT_EQ(slurp(dir.file("o.npy")), slurp(dir.file("o_full.npy")));
  EXPECT_NE(slurp(dir.file("o.npy")), slurp(dir.file("o_causal.npy")));
  const auto generated = run_cli({"run", "--q-len", "16", "--k-len", "16", "--check-rows", "0"});
  EXPECT_NE(generated.out.find(" causal "), std::string::npos) << generated.out;
}

// Empty query rows are defined (README): generation, the check and the
// writers must take zero-size arrays.
TEST_F(CliFiles, EmptyQueryRowsRun) {
  write_qkv(0, 8);
  const auto r = run_cli(args(dir.file("q.npy"), dir.file("o.npy"),
                              {"--lse", dir.file("l.npy"), "--check-rows", "4", "--causal"}));
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_EQ(read_npy(dir.file("o.npy")).shape, (std::vector<std::int64_t>{1, 2, 0, 4}));
  EXPECT_EQ(read_npy(dir.file("l.npy")).shape, (std::vector<std::int64_t>{1, 2, 0}));
  const auto g = run_cli({"run", "--q-len", "0", "--k-len", "16", "--check-rows", "4", "--report",
                          dir.file("r.json"), "--timeline", dir.file("t.svg")});
  EXPECT_EQ(g.code, 0) << g.out << g.err;
}

}  // namespace
}  // namespace longattn::cli
