// Small POSIX file helpers for lethe::io: whole-file reads of small text files and an atomic
// writer (temp file, fsync, rename). Must not parse formats; errors always name the path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace lethe::io {

// What is at a path, following symlinks. Every user file lethe opens goes through these checks
// first, so a FIFO never blocks, a directory is never "read", and OS errors (a symlink loop, no
// permission) become a lethe::Error naming the path instead of an uncaught std::filesystem error.
enum class FileKind { missing, regular, directory, other };
// `missing` only when nothing is there (ENOENT, ENOTDIR); any other stat() failure throws.
FileKind file_kind(const std::string& path);
// "a regular file", "a directory", "a FIFO", "a character device", ... for messages.
std::string file_kind_name(const std::string& path);

// Throws unless `path` is a regular file: "<path>: <what> does not exist" or "<path>: <what> is
// a directory, not a file" / "is a FIFO, not a regular file", ...
void require_regular_file(const std::string& path, const std::string& what = "file");
// Throws unless `path` is a directory.
void require_directory(const std::string& path, const std::string& what = "directory");

// Where an output lies relative to an input, both resolved (symlinks of the existing part
// followed, "." and ".." folded, trailing slashes ignored): the same place, inside it, containing
// it, or apart. lethe refuses an output that is not `apart` from every input (docs/cli.md).
enum class PathRelation { apart, same, inside, contains };
PathRelation path_relation(const std::string& output, const std::string& input);
// "is", "lies inside", "contains" (and "is apart from"), for "output X <words> input Y".
const char* path_relation_words(PathRelation r);
// The path as path_relation compares it (absolute, symlinks of the existing part resolved).
std::string resolved_path(const std::string& path);

// Checks, without creating anything, that `path` can become an output directory: it is a
// directory lethe may write, or it does not exist and its nearest existing ancestor is one.
// Throws lethe::UsageError naming `what` (a recipe key or flag) and the path otherwise.
void require_writable_directory(const std::string& path, const std::string& what);

// Opens `path` read-only and returns the descriptor (the caller closes it) and the file's size.
// The file must be a regular file: it is opened non-blocking so a FIFO cannot hang the process,
// and its type is checked on the open descriptor. Errors name `path`.
struct OpenedFile {
  int fd = -1;
  uint64_t size = 0;
};
OpenedFile open_regular_file(const std::string& path);

// The most read_text_file reads unless told otherwise: text files lethe reads whole (configs,
// tokenizers, data sets, recipes) are far smaller; a larger one is refused before it is read.
constexpr size_t kMaxTextFileBytes = size_t{1} << 30;

// Reads a whole text file into a string. The file must be a regular file (checked on the open
// descriptor, opened non-blocking so a FIFO cannot hang the process) of at most `max_bytes`;
// every error names `path`.
std::string read_text_file(const std::string& path, size_t max_bytes = kMaxTextFileBytes);

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
