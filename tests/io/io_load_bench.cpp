// Checkpoint-load throughput: writes an OPT-shaped f16 safetensors file (~500 MB) and times
// open + copying / reading every tensor's bytes, cold (page cache dropped) and warm. Not a test.
//
//   io_load_bench [--path /tmp/lethe_io_bench.safetensors] [--mb 500] [--repeat 3] [--keep]
//                 [--reuse]
//
// Each mode runs --repeat times and the fastest run is printed (the machine is shared).
// "Cold" drops the file's pages with posix_fadvise(DONTNEED) (works without root because the
// writer fsyncs, so the pages are clean); mincore() reports how much was still resident.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/io/safetensors.h"

namespace {

using lethe::DType;
using lethe::io::SafetensorsFile;
using lethe::io::TensorToWrite;

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void drop_cache(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::fdatasync(fd);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

// Fraction of the file's pages in the page cache.
double resident_fraction(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  size_t size = std::filesystem::file_size(path);
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) return -1;
  size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> vec((size + page - 1) / page);
  ::mincore(p, size, vec.data());
  size_t in = 0;
  for (unsigned char v : vec) in += v & 1;
  ::munmap(p, size);
  return static_cast<double>(in) / static_cast<double>(vec.size());
}

// OPT-125m-like tensors (f16) repeated until `target` bytes.
std::vector<TensorToWrite> opt_like_tensors(uint64_t target, std::vector<uint16_t>& pool) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes = {
      {"model.decoder.embed_tokens.weight", {50272, 768}},
      {"model.decoder.embed_positions.weight", {2050, 768}}};
  uint64_t total = (50272 + 2050) * 768 * 2;
  for (int layer = 0; total < target; ++layer) {
    const std::string p = "model.decoder.layers." + std::to_string(layer) + ".";
    for (const char* proj : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
      shapes.push_back({p + "self_attn." + proj + ".weight", {768, 768}});
      shapes.push_back({p + "self_attn." + proj + ".bias", {768}});
    }
    shapes.push_back({p + "self_attn_layer_norm.weight", {768}});
    shapes.push_back({p + "self_attn_layer_norm.bias", {768}});
    shapes.push_back({p + "fc1.weight", {3072, 768}});
    shapes.push_back({p + "fc1.bias", {3072}});
    shapes.push_back({p + "fc2.weight", {768, 3072}});
    shapes.push_back({p + "fc2.bias", {768}});
    shapes.push_back({p + "final_layer_norm.weight", {768}});
    shapes.push_back({p + "final_layer_norm.bias", {768}});
    total += (4 * (768 * 768 + 768) + 4 * 768 + 2 * 3072 * 768 + 3072 + 768) * 2;
  }
  size_t largest = 50272 * 768;
  pool.resize(largest);
  for (size_t i = 0; i < pool.size(); ++i) pool[i] = static_cast<uint16_t>(i * 2654435761u);
  std::vector<TensorToWrite> out;
  for (auto& [name, shape] : shapes) out.push_back({name, DType::f16, shape, pool.data()});
  return out;
}

struct Result {
  double open_s, read_s;
  uint64_t bytes, checksum;
};

// Opens the file and either copies every tensor into `dst` or sums it in place (zero-copy).
Result load(const std::string& path, bool copy, bool prefetch, std::vector<char>& dst) {
  Result r{};
  double t0 = now();
  SafetensorsFile f = SafetensorsFile::open(path);
  double t1 = now();
  uint64_t off = 0, sum = 0;
  for (const auto& t : f.tensors()) {
    if (prefetch) f.prefetch(t);
    if (copy) {
      std::memcpy(dst.data() + off, t.data, t.nbytes());
    } else {
      const auto* p = static_cast<const unsigned char*>(t.data);
      uint64_t s = 0;
      for (uint64_t i = 0; i + 8 <= t.nbytes(); i += 8) {
        uint64_t v;
        std::memcpy(&v, p + i, 8);
        s += v;
      }
      sum += s;
    }
    off += t.nbytes();
  }
  double t2 = now();
  if (copy) sum = static_cast<unsigned char>(dst[off / 2]);
  r = {t1 - t0, t2 - t1, off, sum};
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  std::string path = "/tmp/lethe_io_bench.safetensors";
  uint64_t mb = 500;
  int repeat = 3;
  bool keep = false, reuse = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--path" && i + 1 < argc)
      path = argv[++i];
    else if (a == "--mb" && i + 1 < argc)
      mb = std::stoull(argv[++i]);
    else if (a == "--repeat" && i + 1 < argc)
      repeat = std::max(1, std::stoi(argv[++i]));
    else if (a == "--keep")
      keep = true;
    else if (a == "--reuse")
      reuse = true;
    else {
      std::fprintf(stderr, "usage: %s [--path P] [--mb N] [--repeat R] [--keep] [--reuse]\n",
                   argv[0]);
      return 2;
    }
  }
  try {
    if (!(reuse && std::filesystem::exists(path))) {
      std::vector<uint16_t> pool;
      auto tensors = opt_like_tensors(mb * 1000000, pool);
      double t0 = now();
      lethe::io::write_safetensors(path, tensors);
      double dt = now() - t0;
      double gb = static_cast<double>(std::filesystem::file_size(path)) / 1e9;
      std::printf("write   %zu tensors, %.3f GB in %.3f s = %.2f GB/s (incl. fsync)\n",
                  tensors.size(), gb, dt, gb / dt);
    }
    const uint64_t size = std::filesystem::file_size(path);
    std::vector<char> dst(size);
    std::memset(dst.data(), 1, dst.size());  // fault the destination in before timing
    for (bool prefetch : {false, true}) {
      for (const char* mode : {"cold copy", "warm copy", "cold read", "warm read"}) {
        bool cold = mode[0] == 'c';
        bool copy = std::strstr(mode, "copy") != nullptr;
        Result r{};
        double res = 0;
        for (int k = 0; k < repeat; ++k) {
          if (cold) drop_cache(path);
          double resident = resident_fraction(path);
          Result rk = load(path, copy, prefetch, dst);
          if (k == 0 || rk.open_s + rk.read_s < r.open_s + r.read_s) {
            r = rk;
            res = resident;
          }
        }
        double gb = static_cast<double>(r.bytes) / 1e9;
        std::printf(
            "%-9s%s %.3f GB: open %.2f ms + %s %.3f s = %.2f GB/s (resident before "
            "%.0f%%, check %llu)\n",
            mode, prefetch ? " +prefetch" : "          ", gb, r.open_s * 1e3,
            copy ? "memcpy" : "sum", r.read_s, gb / (r.open_s + r.read_s), res * 100,
            static_cast<unsigned long long>(r.checksum & 0xff));
      }
    }
    if (!keep) std::filesystem::remove(path);
  } catch (const lethe::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
