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
  // Appended piece by piece: GCC 12 at -O3 sees a bogus overlap (-Wrestrict)
  // in "." + std::string.
  std::string name = ".";
  name += p.filename().string();
  name += ".longattn-";
  name += std::to_string(::getpid());
  name += '-';
  name += std::to_string(counter++);
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
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  // A FIFO or a device (--report /dev/stdout) is written in place: renaming
  // a file over it would replace the device node, not write to it.
  if (fs::exists(st) && !fs::is_regular_file(st)) return write(path);
  // Through a symbolic link, replace the file it points to, not the link.
  const std::string target = fs::exists(st) ? fs::canonical(path, ec).string() : path;
  const std::string tmp = temp_beside(target.empty() ? path : target);
  try {
    write(tmp);
    // Keep the old file's permissions (a 0600 file stays private).
    if (fs::exists(st)) fs::permissions(tmp, st.permissions(), ec);
    sync_file(tmp, path);
    if (::rename(tmp.c_str(), (target.empty() ? path : target).c_str()) != 0)
      io_fail(path, "cannot replace the file", errno);
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
}

void check_writable(const std::string& path, const std::string& flag) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (fs::is_directory(st)) throw IoError(flag + " " + path + ": is a directory; give a file name");
  if (fs::exists(st) && !fs::is_regular_file(st)) {  // written in place
    if (::access(path.c_str(), W_OK) != 0)
      throw IoError(flag + " " + path + ": not writable: " + std::strerror(errno));
    return;
  }
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
