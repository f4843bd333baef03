#include "atomic_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "longattn/error.hpp"

namespace fs = std::filesystem;

namespace longattn::cli {
namespace {

// ".o.npy.longattn-<pid>-<n>" beside o.npy: hidden, and unique per process
// and call, so two runs writing the same target do not share a temp file.
std::string temp_beside(const std::string& path) {
  static std::atomic<unsigned> counter{0};
  const fs::path p(path);
  const std::string name = "." + p.filename().string() + ".longattn-" + std::to_string(::getpid()) +
                           "-" + std::to_string(counter++);
  return (p.parent_path() / name).string();
}

std::string dir_of(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  return parent.empty() ? "." : parent.string();
}

[[noreturn]] void io_fail(const std::string& path, const std::string& what, int err) {
  throw IoError("[longattn] " + path + ": " + what + ": " + std::strerror(err));
}

// fsync before rename: without it a crash soon after can leave the renamed
// file empty on some file systems (ext4 with delalloc, XFS).
void sync_file(const std::string& tmp, const std::string& path) {
  const int fd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) io_fail(path, "cannot reopen the temporary file", errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) io_fail(path, "write failed", err);
}

}  // namespace

void write_atomically(const std::string& path,
                      const std::function<void(const std::string& tmp)>& write) {
  const std::string tmp = temp_beside(path);
  try {
    write(tmp);
    sync_file(tmp, path);
    if (::rename(tmp.c_str(), path.c_str()) != 0) io_fail(path, "cannot replace the file", errno);
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
}

void check_writable(const std::string& path, const std::string& flag) {
  std::error_code ec;
  if (fs::is_directory(path, ec))
    throw IoError(flag + " " + path + ": is a directory; give a file name");
  const std::string dir = dir_of(path);
  if (!fs::is_directory(dir, ec))
    throw IoError(flag + " " + path + ": directory " + dir + " does not exist");
  const std::string tmp = temp_beside(path);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0)
    throw IoError(flag + " " + path + ": cannot create a file in " + dir + ": " +
                  std::strerror(errno));
  ::close(fd);
  ::unlink(tmp.c_str());
}

}  // namespace longattn::cli
