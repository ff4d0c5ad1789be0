// See file_util.h.
#include "engine/io/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "engine/error.h"

namespace lethe::io {

namespace {
std::string errno_text() {
  return std::strerror(errno);
}
}  // namespace

std::string read_text_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  LETHE_CHECK(fd >= 0, path, ": cannot open: ", errno_text());
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    LETHE_FAIL(path, ": not a regular file");
  }
  std::string out;
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
