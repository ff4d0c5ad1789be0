// CPU memory, strided copies, casts, fills and the counter-based RNG.
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/rng.h"

namespace lethe::kernels {

Backend& cpu_backend() {
  // Never destroyed: tensors with static storage duration may be freed after other statics.
  static CpuBackend* instance = new CpuBackend;
  return *instance;
}

namespace {

// Large blocks are cached instead of returned to the OS: glibc hands big allocations back with
// munmap, and every training step would then pay page faults and page clearing for its
// activations and gradients again (measured: a third of a cross-entropy step on 200 MB logits).
// Blocks of at least kCacheMin bytes are rounded to 1 MiB and kept in per-size free lists, up to
// kCacheMax bytes in all; smaller ones go straight to malloc.
class HostBlockCache {
 public:
  static constexpr size_t kCacheMin = size_t{1} << 20;
#if defined(__SANITIZE_ADDRESS__)
  static constexpr size_t kCacheMax = 0;  // keep ASan's use-after-free checks on every block
#else
  static constexpr size_t kCacheMax = size_t{4} << 30;
#endif

  static size_t rounded(size_t bytes) {
    if (bytes < kCacheMin) return (bytes + 63) / 64 * 64;
    return (bytes + kCacheMin - 1) / kCacheMin * kCacheMin;
  }

  void* take(size_t bytes) {
    size_t size = rounded(bytes);
    if (size >= kCacheMin) {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = free_.find(size);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_ -= size;
        return p;
      }
    }
    void* p = std::aligned_alloc(64, size);
    if (!p && size >= kCacheMin) {  // give the cache back to the OS and try once more
      release_all();
      p = std::aligned_alloc(64, size);
    }
    LETHE_CHECK(p != nullptr, "out of host memory allocating ", bytes, " bytes");
    return p;
  }

  void give(void* p, size_t bytes) {
    size_t size = rounded(bytes);
    if (size >= kCacheMin) {
      std::lock_guard<std::mutex> lock(mu_);
      if (cached_ + size <= kCacheMax) {
        free_[size].push_back(p);
        cached_ += size;
        return;
      }
    }
    std::free(p);
  }

  void release_all() {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [size, blocks] : free_)
      for (void* b : blocks) std::free(b);
    free_.clear();
    cached_ = 0;
  }

 private:
  std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;
  size_t cached_ = 0;
};

HostBlockCache& host_cache() {
  static HostBlockCache* cache = new HostBlockCache;  // never destroyed, like the backend
  return *cache;
}

}  // namespace

void cpu_release_cached_blocks() {
  host_cache().release_all();
}

void* CpuBackend::allocate(size_t bytes) {
  return host_cache().take(bytes);
}

void CpuBackend::deallocate(void* ptr, size_t bytes) {
  host_cache().give(ptr, bytes);
}

void CpuBackend::copy_to_host(void* dst, const void* src, size_t bytes) {
  std::memcpy(dst, src, bytes);
}
void CpuBackend::copy_from_host(void* dst, const void* src, size_t bytes) {
  std::memcpy(dst, src, bytes);
}
void CpuBackend::copy_on_device(void* dst, const void* src, size_t bytes) {
  std::memmove(dst, src, bytes);
}

namespace {

// Visits every index of `shape` in row-major order, calling fn(dst_offset, src_offset) with
// element offsets computed from two stride sets. The innermost dim is a tight loop.
template <typename Fn>
void for_each_strided(const Layout& dst, const Layout& src, Fn&& fn) {
  int nd = dst.ndim;
  if (nd == 0) {
    fn(0, 0, 1, 0, 0);
    return;
  }
  int64_t inner = dst.shape[nd - 1];
  int64_t outer = dst.numel() / (inner ? inner : 1);
  if (inner == 0) return;
#pragma omp parallel for schedule(static) if (outer * inner > (1 << 16))
  for (int64_t o = 0; o < outer; ++o) {
    int64_t rem = o, doff = 0, soff = 0;
    for (int d = nd - 2; d >= 0; --d) {
      int64_t i = rem % dst.shape[d];
      rem /= dst.shape[d];
      doff += i * dst.stride[d];
      soff += i * src.stride[d];
    }
    fn(doff, soff, inner, dst.stride[nd - 1], src.stride[nd - 1]);
  }
}

template <typename T>
void strided_copy_typed(T* dst, const Layout& dl, const T* src, const Layout& sl) {
  for_each_strided(dl, sl, [&](int64_t doff, int64_t soff, int64_t n, int64_t ds, int64_t ss) {
    T* d = dst + doff;
    const T* s = src + soff;
    if (ds == 1 && ss == 1) {
      std::memcpy(d, s, static_cast<size_t>(n) * sizeof(T));
    } else {
      for (int64_t i = 0; i < n; ++i) d[i * ds] = s[i * ss];
    }
  });
}

// Generic cast path: through double (kernels/dtype.h).
double load(DType t, const void* p, int64_t i) {
  return load_element_as_double(t, p, i);
}
void store(DType t, void* p, int64_t i, double v) {
  store_element_from_double(t, p, i, v);
}

}  // namespace

void CpuBackend::copy_strided(DType dtype, void* dst, const Layout& dl, const void* src,
                              const Layout& sl) {
  switch (dtype_size(dtype)) {
    case 8:
      strided_copy_typed(static_cast<uint64_t*>(dst), dl, static_cast<const uint64_t*>(src), sl);
      break;
    case 4:
      strided_copy_typed(static_cast<uint32_t*>(dst), dl, static_cast<const uint32_t*>(src), sl);
      break;
    case 2:
      strided_copy_typed(static_cast<uint16_t*>(dst), dl, static_cast<const uint16_t*>(src), sl);
      break;
    case 1:
      strided_copy_typed(static_cast<uint8_t*>(dst), dl, static_cast<const uint8_t*>(src), sl);
      break;
    default: LETHE_FAIL("copy_strided: bad dtype");
  }
}

void CpuBackend::cast(DType from, const void* src, DType to, void* dst, int64_t n) {
  if (from == to) {
    std::memcpy(dst, src, static_cast<size_t>(n) * dtype_size(from));
    return;
  }
  // Fast paths for the conversions that matter for checkpoints and bf16 GEMMs.
  if (from == DType::f32 && to == DType::bf16) {
    const float* s = static_cast<const float*>(src);
    uint16_t* d = static_cast<uint16_t*>(dst);
#pragma omp parallel for simd if (n > (1 << 16))
    for (int64_t i = 0; i < n; ++i) d[i] = f32_to_bf16(s[i]);
    return;
  }
  if (from == DType::bf16 && to == DType::f32) {
    const uint16_t* s = static_cast<const uint16_t*>(src);
    float* d = static_cast<float*>(dst);
#pragma omp parallel for simd if (n > (1 << 16))
    for (int64_t i = 0; i < n; ++i) d[i] = bf16_to_f32(s[i]);
    return;
  }
  if (from == DType::f16 && to == DType::f32) {
    const uint16_t* s = static_cast<const uint16_t*>(src);
    float* d = static_cast<float*>(dst);
#pragma omp parallel for if (n > (1 << 16))
    for (int64_t i = 0; i < n; ++i) d[i] = f16_to_f32(s[i]);
    return;
  }
#pragma omp parallel for if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) store(to, dst, i, load(from, src, i));
}

void CpuBackend::fill(DType dtype, void* dst, int64_t n, double value) {
  if (dtype == DType::f32) {
    float* d = static_cast<float*>(dst);
    float v = static_cast<float>(value);
#pragma omp parallel for simd if (n > (1 << 18))
    for (int64_t i = 0; i < n; ++i) d[i] = v;
    return;
  }
  for (int64_t i = 0; i < n; ++i) store(dtype, dst, i, value);
}

void CpuBackend::fill_uniform(DType dtype, void* dst, int64_t n, uint64_t seed, uint64_t offset,
                              double low, double high) {
#pragma omp parallel for if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i)
    store(dtype, dst, i,
          low + (high - low) * rng::uniform(seed, offset + static_cast<uint64_t>(i)));
}

void CpuBackend::fill_normal(DType dtype, void* dst, int64_t n, uint64_t seed, uint64_t offset,
                             double mean, double stddev) {
#pragma omp parallel for if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) {
    uint64_t c = 2 * (offset + static_cast<uint64_t>(i));
    double u1 = 1.0 - rng::uniform(seed, c);  // (0, 1]
    double u2 = rng::uniform(seed, c + 1);
    double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
    store(dtype, dst, i, mean + stddev * z);
  }
}

void CpuBackend::dropout_mask(DType dtype, void* mask, int64_t n, uint64_t seed, uint64_t offset,
                              double p) {
  double keep_scale = p < 1.0 ? 1.0 / (1.0 - p) : 0.0;
#pragma omp parallel for if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i)
    store(dtype, mask, i,
          rng::uniform(seed, offset + static_cast<uint64_t>(i)) >= p ? keep_scale : 0.0);
}

}  // namespace lethe::kernels
