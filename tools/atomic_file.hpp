// All-or-nothing output files. Every file the tool writes goes through
// write_atomically: a full disk, a killed process or a failing writer leaves
// the previous file as it was and no half-written one in its place.
#pragma once

#include <functional>
#include <string>

namespace longattn::cli {

// Calls write(tmp) to fill a fresh temporary file beside `path` (in the same
// directory, so that the rename cannot cross file systems), flushes it to
// disk and renames it over `path`. If `write` throws or any step fails, the
// temporary file is removed and `path` keeps its old contents; write errors
// throw IoError naming `path`. The new file keeps the old one's permissions;
// through a symbolic link the file it points to is replaced. A FIFO or a
// device (/dev/stdout) is written in place.
void write_atomically(const std::string& path,
                      const std::function<void(const std::string& tmp)>& write);

// Checks, before any work, that write_atomically(path, ...) can succeed as
// far as the file system says: the directory exists and takes a new file
// (one is created and removed), and `path` is not a directory. Throws
// IoError naming `flag` and the path.
void check_writable(const std::string& path, const std::string& flag);

}  // namespace longattn::cli
