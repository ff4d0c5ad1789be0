// safetensors on raw bytes: a validating mmap reader, an atomic writer, and sharded checkpoints
// (model.safetensors.index.json). Must not depend on Tensor: it hands out pointers + keepalives.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernels/dtype.h"

namespace lethe::io {

// The largest header the reader accepts (the limit of the reference implementation).
constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

// "F16" <-> DType. Accepted: F16 BF16 F32 F64 I64 I32 U8 BOOL. The parser throws on others.
const char* safetensors_dtype_name(DType dtype);
std::optional<DType> parse_safetensors_dtype(const std::string& name);

struct TensorInfo {
  std::string name;
  DType dtype = DType::f32;
  std::vector<int64_t> shape;  // empty = 0-dim scalar (numel 1)
  uint64_t begin = 0;          // byte offsets relative to the start of the data section
  uint64_t end = 0;
  const void* data = nullptr;  // points into the file mapping; not necessarily aligned

  int64_t numel() const;
  uint64_t nbytes() const { return end - begin; }
};

// A validated, read-only, memory-mapped safetensors file. Copies are cheap and share the mapping;
// the mapping lives while any copy or any keepalive() handle lives.
class SafetensorsFile {
 public:
  // mmap()s `path` (read-only, MAP_PRIVATE) and validates the header; lethe::Error naming the
  // file (and tensor) on anything the format forbids.
  static SafetensorsFile open(const std::string& path);

  // Parses bytes already in memory; `owner` keeps them alive, `source` names them in messages.
  static SafetensorsFile from_memory(std::shared_ptr<const void> owner, const void* bytes,
                                     size_t size, const std::string& source);

  const std::string& path() const;
  // In file order (sorted by data offset).
  const std::vector<TensorInfo>& tensors() const;
  const TensorInfo* find(const std::string& name) const;
  // Like find(), but a missing name is a lethe::Error naming the file and tensor.
  const TensorInfo& at(const std::string& name) const;
  // __metadata__ (empty map when absent).
  const std::map<std::string, std::string>& metadata() const;
  // Header length N and where the data section starts (8 + N) within the file.
  uint64_t header_size() const;
  uint64_t data_start() const { return 8 + header_size(); }
  // Hints the kernel to read `t`'s bytes now and maps them in one call (MADV_WILLNEED, then
  // MADV_POPULATE_READ where the kernel has it), instead of one page fault per 4 KiB page on
  // first touch. Optional: only speed. No-op for from_memory() files.
  void prefetch(const TensorInfo& t) const;
  // Holding this keeps every TensorInfo::data pointer of this file valid.
  std::shared_ptr<const void> keepalive() const;

  struct State;  // implementation detail (safetensors.cpp)

 private:
  std::shared_ptr<const State> state_;
};

struct TensorToWrite {
  std::string name;
  DType dtype = DType::f32;
  std::vector<int64_t> shape;
  const void* data = nullptr;  // numel * dtype_size bytes; may be null when numel == 0
};

// Writes a safetensors file. Tensors are laid out as the reference writer (the safetensors package,
// behind transformers' save_pretrained) lays them out, whatever order they are given in: by dtype
// (I64, F64, F32, I32, BF16, F16, U8, BOOL), then by name; so the same tensors give the same data
// offsets as the reference. The header is padded with spaces so the data starts 8-byte aligned,
// metadata with "format": "pt" added when absent. Written to `path` + ".tmp", fsynced, then renamed
// over `path`. Errors name the path/tensor.
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// The header bytes write_safetensors would write (8-byte length + padded JSON), for tests.
std::string safetensors_header_bytes(const std::vector<TensorToWrite>& tensors,
                                     const std::map<std::string, std::string>& metadata,
                                     const std::string& source);

// A checkpoint of one or more safetensors files, looked up by tensor name. For a sharded
// checkpoint it is built from model.safetensors.index.json; each shard is opened once.
class SafetensorsIndex {
 public:
  // Reads an index JSON ({"metadata": {...}, "weight_map": {name: file}}); shard paths are
  // relative to the index's directory. Every shard must exist and hold every name mapped to it.
  static SafetensorsIndex open(const std::string& index_path);
  // One file as a one-shard checkpoint.
  static SafetensorsIndex single(const std::string& safetensors_path);

  const std::string& path() const { return path_; }
  const TensorInfo* find(const std::string& name) const;
  const TensorInfo& at(const std::string& name) const;
  // The shard holding `name` (for keepalive() and metadata()); lethe::Error if absent.
  const SafetensorsFile& shard_of(const std::string& name) const;
  // All tensor names, sorted.
  std::vector<std::string> names() const;
  const std::vector<SafetensorsFile>& shards() const { return shards_; }
  // Union of every shard's __metadata__ (first shard wins on conflicts).
  std::map<std::string, std::string> metadata() const;
  // The index's metadata.total_size, when given.
  std::optional<uint64_t> total_size() const { return total_size_; }

 private:
  std::string path_;
  std::vector<SafetensorsFile> shards_;
  std::unordered_map<std::string, size_t> shard_by_name_;  // tensor name -> index in shards_
  std::optional<uint64_t> total_size_;
};

// Opens a checkpoint: `path` may be a .safetensors file, an index .json, or a directory holding
// model.safetensors (preferred) or model.safetensors.index.json.
SafetensorsIndex open_checkpoint(const std::string& path);

}  // namespace lethe::io
