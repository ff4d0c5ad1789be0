// See file_util.h.
#include "engine/io/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <vector>

#include "engine/error.h"

namespace lethe::io {

namespace {
std::string errno_text() {
  return std::strerror(errno);
}
}  // namespace

namespace {
const char* mode_name(mode_t m) {
  if (S_ISREG(m)) return "a regular file";
  if (S_ISDIR(m)) return "a directory";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISSOCK(m)) return "a socket";
  return "not a regular file";
}

// stat() with errors other than "nothing there" turned into a lethe::Error naming the path.
bool stat_path(const std::string& path, struct stat& st) {
  if (::stat(path.c_str(), &st) == 0) return true;
  if (errno == ENOENT || errno == ENOTDIR) return false;
  if (errno == ELOOP) LETHE_FAIL(path, ": too many levels of symbolic links (a symlink loop?)");
  LETHE_FAIL(path, ": cannot access: ", errno_text());
}
}  // namespace

FileKind file_kind(const std::string& path) {
  LETHE_CHECK(!path.empty(), "empty path");
  struct stat st {};
  if (!stat_path(path, st)) return FileKind::missing;
  if (S_ISREG(st.st_mode)) return FileKind::regular;
  if (S_ISDIR(st.st_mode)) return FileKind::directory;
  return FileKind::other;
}

std::string file_kind_name(const std::string& path) {
  struct stat st {};
  if (!stat_path(path, st)) return "missing";
  return mode_name(st.st_mode);
}

void require_regular_file(const std::string& path, const std::string& what) {
  switch (file_kind(path)) {
    case FileKind::regular: return;
    case FileKind::missing: LETHE_FAIL(path, ": ", what, " does not exist");
    case FileKind::directory: LETHE_FAIL(path, ": ", what, " is a directory, not a file");
    case FileKind::other:
      LETHE_FAIL(path, ": ", what, " is ", file_kind_name(path), ", not a regular file");
  }
}

void require_directory(const std::string& path, const std::string& what) {
  switch (file_kind(path)) {
    case FileKind::directory: return;
    case FileKind::missing: LETHE_FAIL(path, ": ", what, " does not exist");
    case FileKind::regular: LETHE_FAIL(path, ": ", what, " is a file, not a directory");
    case FileKind::other:
      LETHE_FAIL(path, ": ", what, " is ", file_kind_name(path), ", not a directory");
  }
}

namespace {
// The components of `path` made absolute, with the symlinks of its existing prefix resolved.
std::vector<std::string> resolved_parts(const std::string& path) {
  namespace fs = std::filesystem;
  LETHE_CHECK(!path.empty(), "empty path");
  std::error_code ec;
  fs::path p = fs::weakly_canonical(fs::absolute(fs::path(path), ec), ec);
  if (ec) p = fs::absolute(fs::path(path)).lexically_normal();
  std::vector<std::string> parts;
  for (const fs::path& c : p.lexically_normal()) {
    const std::string s = c.string();
    if (s.empty() || s == ".") continue;  // a trailing slash leaves an empty last component
    if (s == ".." && !parts.empty() && parts.back() != "/") {
      parts.pop_back();
      continue;
    }
    parts.push_back(s);
  }
  return parts;
}
}  // namespace

std::string resolved_path(const std::string& path) {
  std::string out;
  for (const std::string& c : resolved_parts(path))
    out += c == "/" ? c : (out.empty() || out.back() == '/' ? c : "/" + c);
  return out;
}

PathRelation path_relation(const std::string& output, const std::string& input) {
  const std::vector<std::string> o = resolved_parts(output), i = resolved_parts(input);
  const size_t n = std::min(o.size(), i.size());
  for (size_t k = 0; k < n; ++k)
    if (o[k] != i[k]) {
      // Two names for one existing place that the components cannot show (a bind mount):
      std::error_code ec;
      if (std::filesystem::equivalent(output, input, ec) && !ec) return PathRelation::same;
      return PathRelation::apart;
    }
  if (o.size() == i.size()) return PathRelation::same;
  return o.size() > i.size() ? PathRelation::inside : PathRelation::contains;
}

const char* path_relation_words(PathRelation r) {
  switch (r) {
    case PathRelation::same: return "is";
    case PathRelation::inside: return "lies inside";
    case PathRelation::contains: return "contains";
    case PathRelation::apart: break;
  }
  return "is apart from";
}

void require_writable_directory(const std::string& path, const std::string& what) {
  if (path.empty()) throw UsageError(what + " is empty");
  std::string p = resolved_path(path);
  struct stat st {};
  bool exists = false;
  try {
    exists = stat_path(p, st);
  } catch (const Error& e) {
    throw UsageError(what + ": " + e.what());
  }
  if (exists) {
    if (!S_ISDIR(st.st_mode))
      throw UsageError(what + ": " + path + " is " + mode_name(st.st_mode) +
                       ", not a directory lethe can write into");
    if (::access(p.c_str(), W_OK | X_OK) != 0)
      throw UsageError(what + ": " + path + " cannot be written (" + errno_text() + ")");
    return;
  }
  // The nearest existing ancestor must be a writable directory (then lethe can create the rest).
  std::filesystem::path a = std::filesystem::path(p).parent_path();
  while (true) {
    struct stat ast {};
    bool there = false;
    try {
      there = stat_path(a.string(), ast);
    } catch (const Error& e) {
      throw UsageError(what + ": " + e.what());
    }
    if (there) {
      if (!S_ISDIR(ast.st_mode))
        throw UsageError(what + ": " + path + " cannot be created: " + a.string() + " is " +
                         mode_name(ast.st_mode) + ", not a directory");
      if (::access(a.c_str(), W_OK | X_OK) != 0)
        throw UsageError(what + ": " + path + " cannot be created in " + a.string() + " (" +
                         errno_text() + ")");
      return;
    }
    if (a == a.parent_path()) return;
    a = a.parent_path();
  }
}

OpenedFile open_regular_file(const std::string& path) {
  LETHE_CHECK(!path.empty(), "empty path");
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever. The type is
  // checked on the descriptor, so a file swapped between a check and the open cannot slip by.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR) LETHE_FAIL(path, ": file does not exist");
    if (errno == ELOOP) LETHE_FAIL(path, ": too many levels of symbolic links (a symlink loop?)");
    LETHE_FAIL(path, ": cannot open: ", errno_text());
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const std::string why = errno_text();
    ::close(fd);
    LETHE_FAIL(path, ": cannot stat: ", why);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    LETHE_FAIL(path, ": is ", mode_name(st.st_mode), ", not a regular file");
  }
  ::fcntl(fd, F_SETFL, 0);  // blocking reads from here on (a regular file ignores it anyway)
  return {fd, static_cast<uint64_t>(st.st_size)};
}

std::string read_text_file(const std::string& path, size_t max_bytes) {
  const OpenedFile f = open_regular_file(path);
  const int fd = f.fd;
  if (f.size > max_bytes) {
    ::close(fd);
    LETHE_FAIL(path, ": file is ", f.size, " bytes, more than the ", max_bytes,
               " this reader accepts");
  }
  std::string out;
  out.reserve(static_cast<size_t>(f.size));
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      std::string why = errno_text();
      ::close(fd);
      LETHE_FAIL(path, ": read failed: ", why);
    }
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > max_bytes) {  // the file grew while being read
      ::close(fd);
      LETHE_FAIL(path, ": file is more than the ", max_bytes, " bytes this reader accepts");
    }
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

AtomicFileWriter::AtomicFileWriter(std::string path)
    : path_(std::move(path)), tmp_path_(path_ + ".tmp") {
  fd_ = ::open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  LETHE_CHECK(fd_ >= 0, path_, ": cannot create '", tmp_path_, "': ", errno_text());
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_path_.c_str());
}

void AtomicFileWriter::write(const void* data, size_t size) {
  LETHE_CHECK(fd_ >= 0 && !committed_, path_, ": write after commit");
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    // Linux writes at most ~2 GiB per call; chunk so large tensors need no special case.
    size_t chunk = size < (size_t{1} << 30) ? size : (size_t{1} << 30);
    ssize_t n = ::write(fd_, p, chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      LETHE_FAIL(path_, ": write failed: ", errno_text());
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
}

void AtomicFileWriter::commit() {
  LETHE_CHECK(fd_ >= 0 && !committed_, path_, ": commit twice");
  // fsync before rename: otherwise a crash could leave the new name pointing at missing data.
  if (::fsync(fd_) != 0) LETHE_FAIL(path_, ": fsync failed: ", errno_text());
  int rc = ::close(fd_);
  fd_ = -1;
  LETHE_CHECK(rc == 0, path_, ": close failed: ", errno_text());
  LETHE_CHECK(::rename(tmp_path_.c_str(), path_.c_str()) == 0, path_, ": cannot rename '",
              tmp_path_, "' to it: ", errno_text());
  committed_ = true;
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  AtomicFileWriter w(path);
  w.write(bytes);
  w.commit();
}

}  // namespace lethe::io
