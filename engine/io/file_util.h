// Small POSIX file helpers for lethe::io: whole-file reads of small text files and an atomic
// writer (temp file, fsync, rename). Must not parse formats; errors always name the path.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace lethe::io {

// Reads a whole (small) file into a string; errors name `path`.
std::string read_text_file(const std::string& path);

// Streams bytes to `path` + ".tmp"; commit() flushes, fsyncs and renames it over `path`. If the
// writer is destroyed without commit() (an error was thrown), the temp file is removed and an
// existing `path` is untouched.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::string path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* data, size_t size);
  void write(std::string_view bytes) { write(bytes.data(), bytes.size()); }
  void commit();

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::string tmp_path_;
  int fd_ = -1;
  bool committed_ = false;
};

// Writes `bytes` to `path` atomically (AtomicFileWriter in one call).
void write_file_atomic(const std::string& path, std::string_view bytes);

}  // namespace lethe::io
