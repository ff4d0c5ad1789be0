// See safetensors.h. Format: 8-byte little-endian header length N, N bytes of JSON, then data.
#include "engine/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "engine/io/file_util.h"
#include "engine/io/json.h"

namespace lethe::io {

namespace {

struct DTypeName {
  const char* name;
  DType dtype;
};
constexpr DTypeName kDTypeNames[] = {
    {"F16", DType::f16}, {"BF16", DType::bf16}, {"F32", DType::f32}, {"F64", DType::f64},
    {"I64", DType::i64}, {"I32", DType::i32},   {"U8", DType::u8},   {"BOOL", DType::boolean},
};

std::string shape_text(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? "," : "") << shape[i];
  os << ']';
  return os.str();
}

// numel * dtype_size, or nullopt on overflow (or a negative dimension).
std::optional<uint64_t> byte_size(const std::vector<int64_t>& shape, DType dtype) {
  uint64_t n = dtype_size(dtype);
  for (int64_t d : shape) {
    if (d < 0) return std::nullopt;
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) return std::nullopt;
  }
  if (n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
  return n;
}

// An mmap()ed region, unmapped when the last owner lets go.
struct Mapping {
  void* base = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (base != nullptr) ::munmap(base, size);
  }
};

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// A JSON integer that fits in uint64 (nlohmann stores non-negative integers as unsigned).
bool as_u64(const nlohmann::json& j, uint64_t* out) {
  if (!j.is_number_unsigned()) return false;
  *out = j.get<uint64_t>();
  return true;
}

}  // namespace

const char* safetensors_dtype_name(DType dtype) {
  for (const auto& d : kDTypeNames)
    if (d.dtype == dtype) return d.name;
  return "?";
}

std::optional<DType> parse_safetensors_dtype(const std::string& name) {
  for (const auto& d : kDTypeNames)
    if (name == d.name) return d.dtype;
  return std::nullopt;
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // validated not to overflow when the file was opened
  return n;
}

// ---------------------------------------------------------------------------------------------
// Reader

struct SafetensorsFile::State {
  std::string path;
  std::shared_ptr<const void> owner;
  bool mapped = false;  // owner is an mmap()ed file (prefetch applies)
  uint64_t header_size = 0;
  std::vector<TensorInfo> tensors;
  std::unordered_map<std::string, size_t> by_name;
  std::map<std::string, std::string> metadata;
};

namespace {

// Reads one header entry into `t` (name already set), checking types, dtype and byte count.
void parse_entry(const std::string& src, const nlohmann::json& entry, TensorInfo& t) {
  const std::string where = src + ": tensor '" + t.name + "'";
  LETHE_CHECK(entry.is_object(), where, ": header entry is not a JSON object");
  for (const char* key : {"dtype", "shape", "data_offsets"})
    LETHE_CHECK(entry.contains(key), where, ": header entry has no '", key, "'");

  const auto& dtype = entry["dtype"];
  LETHE_CHECK(dtype.is_string(), where, ": 'dtype' is not a string");
  const auto& dtype_str = dtype.get_ref<const std::string&>();
  auto parsed = parse_safetensors_dtype(dtype_str);
  LETHE_CHECK(parsed.has_value(), where, ": unsupported dtype '", dtype_str,
              "' (lethe reads F16 BF16 F32 F64 I64 I32 U8 BOOL)");
  t.dtype = *parsed;

  const auto& shape = entry["shape"];
  LETHE_CHECK(shape.is_array(), where, ": 'shape' is not an array");
  for (const auto& d : shape) {
    LETHE_CHECK(d.is_number_integer(), where, ": 'shape' ", json_excerpt(shape),
                " holds something that is not an integer");
    LETHE_CHECK(d.is_number_unsigned(), where, ": 'shape' ", json_excerpt(shape),
                " has a negative dimension");
    uint64_t v = d.get<uint64_t>();
    LETHE_CHECK(v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), where,
                ": 'shape' ", json_excerpt(shape), " has a dimension too large");
    t.shape.push_back(static_cast<int64_t>(v));
  }

  const auto& offs = entry["data_offsets"];
  uint64_t b = 0, e = 0;
  LETHE_CHECK(offs.is_array() && offs.size() == 2 && as_u64(offs[0], &b) && as_u64(offs[1], &e),
              where, ": 'data_offsets' must be [begin, end] with non-negative integers, got ",
              json_excerpt(offs));
  LETHE_CHECK(b <= e, where, ": data_offsets [", b, ", ", e, "] end before they begin");
  t.begin = b;
  t.end = e;

  auto need = byte_size(t.shape, t.dtype);
  LETHE_CHECK(need.has_value(), where, ": ", dtype_str, " ", shape_text(t.shape),
              " has too many bytes to address");
  LETHE_CHECK(e - b == *need, where, ": data_offsets [", b, ", ", e, "] but ", dtype_str, " ",
              shape_text(t.shape), " needs ", *need, " bytes");
}

std::shared_ptr<SafetensorsFile::State> parse_safetensors(std::shared_ptr<const void> owner,
                                                          const uint8_t* bytes, size_t size,
                                                          const std::string& src) {
  auto st = std::make_shared<SafetensorsFile::State>();
  st->path = src;
  st->owner = std::move(owner);

  LETHE_CHECK(size >= 8, src, ": file is ", size,
              " bytes, shorter than the 8-byte header length of a safetensors file");
  const uint64_t n = read_u64_le(bytes);
  LETHE_CHECK(n <= kMaxSafetensorsHeaderBytes, src, ": header length ", n, " exceeds the limit of ",
              kMaxSafetensorsHeaderBytes, " bytes (is this a safetensors file?)");
  LETHE_CHECK(n <= size - 8, src, ": header length ", n, " runs past the end of the file (", size,
              " bytes)");
  st->header_size = n;

  std::string_view text(reinterpret_cast<const char*>(bytes + 8), n);
  nlohmann::json header = parse_json(text, src + ": header");
  LETHE_CHECK(header.is_object(), src, ": header is not a JSON object");

  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      LETHE_CHECK(value.is_object(), src, ": __metadata__ is not a JSON object");
      for (const auto& [mk, mv] : value.items()) {
        LETHE_CHECK(mv.is_string(), src, ": __metadata__ value of '", mk,
                    "' is not a string: ", json_excerpt(mv));
        st->metadata[mk] = mv.get<std::string>();
      }
      continue;
    }
    TensorInfo t;
    t.name = key;
    parse_entry(src, value, t);
    st->tensors.push_back(std::move(t));
  }

  // The data section must be exactly the concatenation of the tensors, in offset order.
  std::stable_sort(st->tensors.begin(), st->tensors.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const uint64_t data_size = size - 8 - n;
  uint64_t expected = 0;
  const TensorInfo* prev = nullptr;
  for (const auto& t : st->tensors) {
    const std::string where = src + ": tensor '" + t.name + "'";
    if (t.begin > expected) {
      if (prev)
        LETHE_FAIL(where, ": data_offsets [", t.begin, ", ", t.end, "] leave a hole after tensor '",
                   prev->name, "', which ends at ", expected);
      LETHE_FAIL(where, ": data_offsets [", t.begin, ", ", t.end,
                 "] leave a hole: the first tensor must start at 0");
    }
    if (t.begin < expected)
      LETHE_FAIL(where, ": data_offsets [", t.begin, ", ", t.end, "] overlap tensor '", prev->name,
                 "', which ends at ", expected);
    expected = t.end;
    prev = &t;
  }
  if (expected != data_size) {
    if (expected > data_size)
      LETHE_FAIL(src, ": tensor '", prev->name, "' ends at data offset ", expected,
                 " but the file holds only ", data_size, " bytes of data (truncated?)");
    LETHE_FAIL(src, ": the data section is ", data_size, " bytes but the tensors end at ", expected,
               " (", data_size - expected, " bytes of trailing garbage)");
  }

  const uint8_t* data = bytes + 8 + n;
  for (size_t i = 0; i < st->tensors.size(); ++i) {
    auto& t = st->tensors[i];
    t.data = data + t.begin;
    // JSON object keys are unique (parse_json rejects duplicates), so this cannot collide.
    st->by_name.emplace(t.name, i);
  }
  return st;
}

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  const OpenedFile opened = open_regular_file(path);  // regular file, never blocks on a FIFO
  const int fd = opened.fd;
  const size_t size = static_cast<size_t>(opened.size);
  if (size < 8) {
    ::close(fd);
    LETHE_FAIL(path, ": file is ", size,
               " bytes, shorter than the 8-byte header length of a safetensors file");
  }
  void* base = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  int mmap_errno = errno;
  ::close(fd);  // the mapping keeps its own reference to the file
  LETHE_CHECK(base != MAP_FAILED, path, ": mmap failed: ", std::strerror(mmap_errno));
  auto mapping = std::make_shared<Mapping>();
  mapping->base = base;
  mapping->size = size;
  const auto* bytes = static_cast<const uint8_t*>(base);
  SafetensorsFile f;
  auto st = parse_safetensors(std::move(mapping), bytes, size, path);
  st->mapped = true;
  f.state_ = std::move(st);
  return f;
}

SafetensorsFile SafetensorsFile::from_memory(std::shared_ptr<const void> owner, const void* bytes,
                                             size_t size, const std::string& source) {
  SafetensorsFile f;
  f.state_ = parse_safetensors(std::move(owner), static_cast<const uint8_t*>(bytes), size, source);
  return f;
}

const std::string& SafetensorsFile::path() const {
  return state_->path;
}
const std::vector<TensorInfo>& SafetensorsFile::tensors() const {
  return state_->tensors;
}
const std::map<std::string, std::string>& SafetensorsFile::metadata() const {
  return state_->metadata;
}
uint64_t SafetensorsFile::header_size() const {
  return state_->header_size;
}
std::shared_ptr<const void> SafetensorsFile::keepalive() const {
  return state_->owner;
}

void SafetensorsFile::prefetch(const TensorInfo& t) const {
  if (!state_->mapped || t.nbytes() == 0) return;
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t b = reinterpret_cast<uintptr_t>(t.data) & ~(page - 1);
  const uintptr_t e = reinterpret_cast<uintptr_t>(t.data) + t.nbytes();
  void* addr = reinterpret_cast<void*>(b);
  ::madvise(addr, e - b, MADV_WILLNEED);  // start readahead of the whole range
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22  // Linux 5.14; older kernels return EINVAL, which we ignore
#endif
  ::madvise(addr, e - b, MADV_POPULATE_READ);
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = state_->by_name.find(name);
  return it == state_->by_name.end() ? nullptr : &state_->tensors[it->second];
}

const TensorInfo& SafetensorsFile::at(const std::string& name) const {
  const TensorInfo* t = find(name);
  LETHE_CHECK(t != nullptr, state_->path, ": no tensor '", name, "'");
  return *t;
}

// ---------------------------------------------------------------------------------------------
// Writer

namespace {

// The rank of a dtype in the reference serializer's dtype enum (safetensors' Rust `Dtype`, declared
// BOOL < U8 < … < F16 < BF16 < I32 < F32 < F64 < I64): it writes larger ranks first.
int reference_dtype_rank(DType d) {
  switch (d) {
    case DType::boolean: return 0;
    case DType::u8: return 1;
    case DType::f16: return 2;
    case DType::bf16: return 3;
    case DType::i32: return 4;
    case DType::f32: return 5;
    case DType::f64: return 6;
    case DType::i64: return 7;
  }
  return -1;
}

// The tensors in the order the reference writer (the safetensors package, used by transformers'
// save_pretrained) lays them out: by dtype rank descending, then by name (bytewise). The same
// tensors then give the same data offsets and the same file body as the reference.
std::vector<TensorToWrite> in_reference_order(const std::vector<TensorToWrite>& tensors) {
  std::vector<TensorToWrite> sorted = tensors;
  std::stable_sort(
      sorted.begin(), sorted.end(), [](const TensorToWrite& a, const TensorToWrite& b) {
        const int ra = reference_dtype_rank(a.dtype), rb = reference_dtype_rank(b.dtype);
        if (ra != rb) return ra > rb;
        return a.name < b.name;
      });
  return sorted;
}

}  // namespace

std::string safetensors_header_bytes(const std::vector<TensorToWrite>& unordered,
                                     const std::map<std::string, std::string>& metadata,
                                     const std::string& source) {
  const std::vector<TensorToWrite> tensors = in_reference_order(unordered);
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  nlohmann::ordered_json meta = nlohmann::ordered_json::object();
  for (const auto& [k, v] : metadata) meta[k] = v;
  if (!meta.contains("format")) meta["format"] = "pt";  // from_pretrained requires it
  header["__metadata__"] = std::move(meta);

  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    const std::string where = source + ": tensor '" + t.name + "'";
    LETHE_CHECK(t.name != "__metadata__", where, ": the name is reserved");
    LETHE_CHECK(seen.insert(t.name).second, where, ": duplicate tensor name");
    auto nbytes = byte_size(t.shape, t.dtype);
    LETHE_CHECK(nbytes.has_value(), where, ": bad shape ", shape_text(t.shape));
    LETHE_CHECK(t.data != nullptr || *nbytes == 0, where, ": null data for ", *nbytes, " bytes");
    nlohmann::ordered_json entry = nlohmann::ordered_json::object();
    entry["dtype"] = safetensors_dtype_name(t.dtype);
    entry["shape"] = t.shape;
    entry["data_offsets"] = {offset, offset + *nbytes};
    header[t.name] = std::move(entry);
    offset += *nbytes;
  }
  std::string json;
  try {
    json = header.dump();
  } catch (const nlohmann::json::exception& e) {  // a name or metadata string that is not UTF-8
    LETHE_FAIL(source, ": cannot write header: ", e.what());
  }
  // Pad with spaces so 8 + N is a multiple of 8 and every tensor starts 8-byte aligned
  // relative to the file (as the reference writer does).
  json.append((8 - json.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  out += json;
  return out;
}

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::string header = safetensors_header_bytes(tensors, metadata, path);
  AtomicFileWriter w(path);
  w.write(header);
  for (const auto& t : in_reference_order(tensors)) {  // the header's order
    uint64_t nbytes = *byte_size(t.shape, t.dtype);    // validated by safetensors_header_bytes
    if (nbytes > 0) w.write(t.data, nbytes);
  }
  w.commit();
}

// ---------------------------------------------------------------------------------------------
// Sharded checkpoints

SafetensorsIndex SafetensorsIndex::single(const std::string& safetensors_path) {
  SafetensorsIndex idx;
  idx.path_ = safetensors_path;
  idx.shards_.push_back(SafetensorsFile::open(safetensors_path));
  for (const auto& t : idx.shards_[0].tensors()) idx.shard_by_name_.emplace(t.name, 0);
  return idx;
}

SafetensorsIndex SafetensorsIndex::open(const std::string& index_path) {
  SafetensorsIndex idx;
  idx.path_ = index_path;
  nlohmann::json j = read_json_file(index_path);
  LETHE_CHECK(j.is_object(), index_path, ": not a JSON object");
  if (j.contains("metadata")) {
    const auto& meta = j["metadata"];
    LETHE_CHECK(meta.is_object() || meta.is_null(), index_path, ": 'metadata' is not an object");
    if (meta.is_object() && meta.contains("total_size")) {
      const auto& ts = meta["total_size"];
      uint64_t v = 0;
      if (as_u64(ts, &v)) {
        idx.total_size_ = v;
      } else if (ts.is_number_float() && ts.get<double>() >= 0 && ts.get<double>() < 1.8e19) {
        idx.total_size_ = static_cast<uint64_t>(ts.get<double>());  // some writers emit 1.0e9
      } else {
        LETHE_FAIL(index_path,
                   ": metadata.total_size is not a non-negative number: ", json_excerpt(ts));
      }
    }
  }
  LETHE_CHECK(j.contains("weight_map"), index_path, ": no 'weight_map'");
  const auto& wm = j["weight_map"];
  LETHE_CHECK(wm.is_object(), index_path, ": 'weight_map' is not an object");

  const std::filesystem::path dir = std::filesystem::path(index_path).parent_path();
  std::map<std::string, size_t> shard_by_file;
  for (const auto& [name, file_json] : wm.items()) {
    LETHE_CHECK(file_json.is_string(), index_path, ": weight_map entry for tensor '", name,
                "' is not a file name string");
    const auto& file = file_json.get_ref<const std::string&>();
    std::filesystem::path rel(file);
    bool escapes = file.empty() || rel.is_absolute();
    for (const auto& part : rel)
      if (part == "..") escapes = true;
    LETHE_CHECK(!escapes, index_path, ": tensor '", name, "' maps to shard '", file,
                "', which is not a relative path inside the checkpoint directory");
    auto it = shard_by_file.find(file);
    if (it == shard_by_file.end()) {
      const std::string shard_path = (dir / rel).string();
      LETHE_CHECK(file_kind(shard_path) != FileKind::missing, index_path, ": shard '", file,
                  "' (holding tensor '", name, "') not found at ", shard_path);
      require_regular_file(shard_path, "shard '" + file + "'");
      idx.shards_.push_back(SafetensorsFile::open(shard_path));
      it = shard_by_file.emplace(file, idx.shards_.size() - 1).first;
    }
    LETHE_CHECK(idx.shards_[it->second].find(name) != nullptr, index_path, ": tensor '", name,
                "' is mapped to shard '", file, "', which has no such tensor");
    idx.shard_by_name_.emplace(name, it->second);
  }
  return idx;
}

const TensorInfo* SafetensorsIndex::find(const std::string& name) const {
  auto it = shard_by_name_.find(name);
  return it == shard_by_name_.end() ? nullptr : shards_[it->second].find(name);
}

const TensorInfo& SafetensorsIndex::at(const std::string& name) const {
  const TensorInfo* t = find(name);
  LETHE_CHECK(t != nullptr, path_, ": no tensor '", name, "'");
  return *t;
}

const SafetensorsFile& SafetensorsIndex::shard_of(const std::string& name) const {
  auto it = shard_by_name_.find(name);
  LETHE_CHECK(it != shard_by_name_.end(), path_, ": no tensor '", name, "'");
  return shards_[it->second];
}

std::vector<std::string> SafetensorsIndex::names() const {
  std::vector<std::string> out;
  out.reserve(shard_by_name_.size());
  for (const auto& [name, shard] : shard_by_name_) out.push_back(name);
  std::sort(out.begin(), out.end());
  return out;
}

std::map<std::string, std::string> SafetensorsIndex::metadata() const {
  std::map<std::string, std::string> out;
  for (const auto& s : shards_) out.insert(s.metadata().begin(), s.metadata().end());
  return out;
}

SafetensorsIndex open_checkpoint(const std::string& path) {
  switch (file_kind(path)) {
    case FileKind::missing: LETHE_FAIL(path, ": no such file or directory");
    case FileKind::other: require_regular_file(path, "checkpoint"); break;  // throws, names kind
    case FileKind::regular: break;
    case FileKind::directory: {
      const std::filesystem::path dir(path);
      // Whatever is at either name decides: a directory, a device or a symlink loop named
      // model.safetensors is reported as such, not as "no model.safetensors".
      const std::string single = (dir / "model.safetensors").string();
      if (file_kind(single) != FileKind::missing) {
        require_regular_file(single, "model.safetensors");
        return SafetensorsIndex::single(single);
      }
      const std::string index = (dir / "model.safetensors.index.json").string();
      if (file_kind(index) != FileKind::missing) {
        require_regular_file(index, "model.safetensors.index.json");
        return SafetensorsIndex::open(index);
      }
      std::string hint;
      if (file_kind((dir / "pytorch_model.bin").string()) == FileKind::regular)
        hint = "; it has pytorch_model.bin: convert it with tools/convert_bin_to_safetensors.py";
      LETHE_FAIL(path, ": no model.safetensors or model.safetensors.index.json", hint);
    }
  }
  const std::string suffix = ".json";
  if (path.size() >= suffix.size() &&
      path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0)
    return SafetensorsIndex::open(path);
  return SafetensorsIndex::single(path);
}

}  // namespace lethe::io
