// The built binary as a process: what the shell's limits and signals do to
// it (a file size limit, a repeated SIGTERM), which in-process tests cannot
// show because they would hit the test runner itself.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "cli_test_util.hpp"
#include "npy.hpp"
#include "progress.hpp"

namespace longattn::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), {});
}

// Starts the binary with `args`, stdout and stderr into `log`, with default
// signal actions, no signal blocked and, when `fsize_limit` > 0, that file size limit
// (ulimit -f). Everything the child needs is built before fork().
pid_t spawn(const std::vector<std::string>& args, const std::string& log, rlim_t fsize_limit = 0) {
  std::vector<std::string> all = {LONGATTN_CLI_PATH};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) ::_exit(126);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    if (fsize_limit > 0) {
      const rlimit r{fsize_limit, fsize_limit};
      ::setrlimit(RLIMIT_FSIZE, &r);
    }
    // As a shell would start it, whatever the test runner blocks or ignores.
    for (int sig : {SIGXFSZ, SIGTERM, SIGINT}) ::signal(sig, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

// The child's wait status, or -1 after `limit` (the child is then killed).
int wait_for(pid_t pid, std::chrono::milliseconds limit) {
  const auto end = Clock::now() + limit;
  int status = 0;
  while (Clock::now() < end) {
    if (::waitpid(pid, &status, WNOHANG) == pid) return status;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return -1;
}

// Under `ulimit -f`, SIGXFSZ killed the tool in the middle of o.npy and left
// its temporary file beside it. Now the write fails with EFBIG: exit 1, a
// message naming the file, the previous o.npy kept, no temporary file.
TEST(CliProcess, AFileSizeLimitFailsTheWriteCleanly) {
  test::TempDir dir;
  const std::vector<float> x(2 * 4096 * 4, 0.25f);  // out: 128 KiB, over the limit
  for (const char* name : {"q", "k", "v"})
    write_npy(dir.file(std::string(name) + ".npy"), DType::float32,
              std::vector<std::int64_t>{1, 2, 4096, 4}, x.data());
  const std::string out = dir.file("o.npy");
  std::ofstream(out) << "previous result";
  const pid_t pid = spawn({"run", "--q", dir.file("q.npy"), "--k", dir.file("k.npy"), "--v",
                           dir.file("v.npy"), "--out", out, "--no-progress"},
                          dir.file("log.txt"), 64 << 10);
  const int status = wait_for(pid, std::chrono::seconds(60));
  const std::string log = slurp(dir.file("log.txt"));
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status << "\n" << log;
  EXPECT_EQ(WEXITSTATUS(status), 1) << log;
  EXPECT_NE(log.find(out + ": write failed: File too large"), std::string::npos) << log;
  EXPECT_EQ(slurp(out), "previous result");
  for (const auto& e : fs::directory_iterator(dir.file("")))
    EXPECT_EQ(e.path().filename().string().find("longattn-"), std::string::npos)
        << "temporary file left: " << e.path();
}

// The first SIGTERM stops at the next submission boundary, which with no
// budget is the end of the whole run: `kill` then seemed to do nothing for
// as long as the run took. A second one ends the process at once.
TEST(CliProcess, ASecondSigtermEndsTheRunAtOnce) {
  test::TempDir dir;
  const std::string log = dir.file("log.txt");
  // One submission of ~550 GFLOP on one thread: many seconds on any CPU.
  const pid_t pid = spawn({"run", "--q-len", "16384", "--k-len", "16384", "--budget-ms", "0",
                           "--threads", "1", "--check-rows", "0", "--no-progress"},
                          log);
  // The handlers are installed just after the plan is printed.
  const auto give_up = Clock::now() + std::chrono::seconds(60);
  while (slurp(log).find("plan:") == std::string::npos && Clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ::kill(pid, SIGTERM);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto second = Clock::now();
  ::kill(pid, SIGTERM);
  const int status = wait_for(pid, std::chrono::seconds(30));
  const double waited = std::chrono::duration<double>(Clock::now() - second).count();
  ASSERT_NE(status, -1) << "still running 30 s after the second SIGTERM\n" << slurp(log);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM) << "status " << status << "\n"
                                                                  << slurp(log);
  EXPECT_LT(waited, 2.0) << slurp(log);
}

// A signal that comes after the last submission has nothing left to stop:
// the progress callback no longer cancels then, which threw away a finished
// result ("cancelled after 1 submission, 100% of the work; no output
// written").
TEST(CliProcess, ASignalAfterTheLastSubmissionKeepsTheResult) {
  std::ostringstream err;
  ProgressBar bar(err, /*enabled=*/false);
  ASSERT_EQ(::raise(SIGTERM), 0);  // the bar's handler: a first signal is only recorded
  EXPECT_EQ(bar.stop_signal(), SIGTERM);
  const ProgressCallback cb = bar.callback();
  const RunReport report;
  EXPECT_FALSE(cb(2, 3, report)) << "work was left: stop";
  EXPECT_TRUE(cb(3, 3, report)) << "all submitted: nothing to stop";
}

}  // namespace
}  // namespace longattn::cli
