// CUDA backend creation, the caching allocator, host<->device copies, strided copies, casts,
// fills and the counter-based RNG (bitwise the same uniforms as the CPU backend).
#include <cstring>
#include <memory>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_debug.h"
#include "kernels/rng.h"

namespace lethe::kernels {

void check_launch(const char* what) {
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    LETHE_FAIL("CUDA kernel ", what, " failed to launch: ", cudaGetErrorName(err), ": ",
               cudaGetErrorString(err));
}

// ---- backend creation -----------------------------------------------------------------------

namespace {

struct CudaState {
  std::mutex mu;
  bool probed = false;
  int count = 0;  // visible GPUs
  std::string reason;
  CudaBackend* backend = nullptr;  // leaked on purpose: tensors may be freed during static exit
  int device = -1;                 // the GPU this process drives
};

CudaState& cuda_state() {
  static CudaState* state = new CudaState();
  return *state;
}

// Counts the GPUs once (under the lock).
void probe(CudaState& s) {
  if (s.probed) return;
  s.probed = true;
  cudaError_t err = cudaGetDeviceCount(&s.count);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear it so later runtime calls are not confused by it
    s.count = 0;
    s.reason = std::string("no usable CUDA driver/device (cudaGetDeviceCount: ") +
               cudaGetErrorName(err) + ": " + cudaGetErrorString(err) + ")";
  } else if (s.count == 0) {
    s.reason = "no CUDA device is visible (cudaGetDeviceCount returned 0)";
  }
}

}  // namespace

Backend* cuda_backend(int device) {
  CudaState& s = cuda_state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.backend) return s.device == device ? s.backend : nullptr;
  probe(s);
  if (device < 0 || device >= s.count || !s.reason.empty()) return nullptr;
  try {
    s.backend = new CudaBackend(device);
    s.device = device;
  } catch (const std::exception& e) {
    s.reason = std::string("the CUDA backend failed to start on cuda:") + std::to_string(device) +
               ": " + e.what();
  }
  return s.backend;
}

std::string cuda_unavailable_reason(int device) {
  CudaState& s = cuda_state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.backend && s.device == device) return "the CUDA backend is available";
  if (s.backend)
    return "this process drives cuda:" + std::to_string(s.device) +
           " already (one GPU per process; under mpirun each rank takes its local rank's GPU)";
  probe(s);
  if (!s.reason.empty()) return s.reason;
  if (device < 0 || device >= s.count)
    return "cuda:" + std::to_string(device) + " does not exist (" + std::to_string(s.count) +
           " CUDA device(s) visible)";
  return "the CUDA backend has not started on cuda:" + std::to_string(device);
}

size_t cuda_reset_peak_bytes() {
  CudaState& s = cuda_state();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.backend ? s.backend->allocator().reset_peak() : 0;
}

size_t cuda_peak_bytes() {
  CudaState& s = cuda_state();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.backend ? s.backend->allocator().peak_bytes() : 0;
}

void cuda_set_poison_allocations(bool on) {
  CudaState& s = cuda_state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.backend) s.backend->allocator().set_poison(on);
}

CudaBackend::CudaBackend(int device) {
  LETHE_CUDA_CHECK(cudaSetDevice(device));
  LETHE_CUDA_CHECK(cudaGetDeviceProperties(&props_, device));
  LETHE_CUBLAS_CHECK(cublasCreate(&cublas_));
  // Ops run in order on the legacy default stream; cuBLAS joins it.
  LETHE_CUBLAS_CHECK(cublasSetStream(cublas_, 0));
  LETHE_CUBLAS_CHECK(cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH));  // no TF32: f32 is exact
}

void CudaBackend::synchronize() {
  LETHE_CUDA_CHECK(cudaDeviceSynchronize());
}

// ---- caching allocator ------------------------------------------------------------------------

size_t CachingAllocator::round_size(size_t bytes) {
#ifdef LETHE_CUDA_EMULATED
  // Exact sizes under the emulator: a kernel that runs past a tensor leaves its cudaMalloc block,
  // which AddressSanitizer reports (and blocks of the same size are still reused).
  if (bytes > 0) return bytes;
#endif
  constexpr size_t kSmall = 512, kLarge = 2u << 20;  // 512 B granules, 2 MiB above 1 MiB
  if (bytes <= (1u << 20)) return (bytes + kSmall - 1) / kSmall * kSmall;
  return (bytes + kLarge - 1) / kLarge * kLarge;
}

void* CachingAllocator::allocate(size_t bytes) {
  if (bytes == 0) return nullptr;
  size_t size = round_size(bytes);
  void* p = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = free_.find(size);
    if (it != free_.end() && !it->second.empty()) {
      p = it->second.back();
      it->second.pop_back();
      live_[p] = size;
      note_live(size);
    }
  }
  if (!p) {
    cudaError_t err = cudaMalloc(&p, size);
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      release_cached();  // give cached blocks of other sizes back and try once more
      err = cudaMalloc(&p, size);
    }
    if (err != cudaSuccess) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      if (err == cudaErrorMemoryAllocation)
        LETHE_FAIL("CUDA out of memory allocating ", bytes, " bytes (free ", free_b, " of ",
                   total_b, " bytes on the device)");
      LETHE_FAIL("CUDA error in cudaMalloc(", size, " bytes): ", cudaGetErrorName(err), ": ",
                 cudaGetErrorString(err));
    }
    std::lock_guard<std::mutex> lock(mu_);
    live_[p] = size;
    note_live(size);
  }
  if (poison_) LETHE_CUDA_CHECK(cudaMemsetAsync(p, 0xFF, size, 0));
  return p;
}

void CachingAllocator::deallocate(void* ptr) {
  if (!ptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(ptr);
  if (it == live_.end()) return;  // not ours (never happens through Storage); ignore, don't crash
  // Kernels run in stream order, so a block freed here may be reused by the next launch at once.
  free_[it->second].push_back(ptr);
  live_bytes_ -= it->second;
  live_.erase(it);
}

void CachingAllocator::release_cached() {
  std::lock_guard<std::mutex> lock(mu_);
  cudaDeviceSynchronize();
  for (auto& [size, ptrs] : free_)
    for (void* p : ptrs) cudaFree(p);
  free_.clear();
}

size_t cuda_cached_bytes() {
  CudaState& s = cuda_state();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.backend ? s.backend->allocator().cached_bytes() : 0;
}

size_t CachingAllocator::cached_bytes() {
  std::lock_guard<std::mutex> lock(mu_);
  size_t total = 0;
  for (auto& [size, ptrs] : free_) total += size * ptrs.size();
  return total;
}

void* CudaBackend::allocate(size_t bytes) {
  return allocator_.allocate(bytes);
}
void CudaBackend::deallocate(void* ptr, size_t) {
  allocator_.deallocate(ptr);
}

// ---- copies
// --------------------------------------------------------------------------------------

void CudaBackend::copy_to_host(void* host_dst, const void* dev_src, size_t bytes) {
  if (bytes) LETHE_CUDA_CHECK(cudaMemcpy(host_dst, dev_src, bytes, cudaMemcpyDeviceToHost));
}
void CudaBackend::copy_from_host(void* dev_dst, const void* host_src, size_t bytes) {
  if (bytes) LETHE_CUDA_CHECK(cudaMemcpy(dev_dst, host_src, bytes, cudaMemcpyHostToDevice));
}
void CudaBackend::copy_on_device(void* dst, const void* src, size_t bytes) {
  if (bytes) LETHE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, 0));
}

namespace {

// Element offsets of linear index i (row-major over shape) under two stride sets.
struct Offsets2 {
  int64_t a, b;
};
__device__ __forceinline__ Offsets2 strided_offsets(int64_t i, const Layout& la, const Layout& lb) {
  Offsets2 o{0, 0};
  for (int d = la.ndim - 1; d >= 0; --d) {
    int64_t idx = i % la.shape[d];
    i /= la.shape[d];
    o.a += idx * la.stride[d];
    o.b += idx * lb.stride[d];
  }
  return o;
}

template <typename T>
__global__ void copy_strided_kernel(T* dst, Layout dl, const T* src, Layout sl, int64_t n) {
  for (int64_t i = global_index(); i < n; i += global_stride()) {
    Offsets2 o = strided_offsets(i, dl, sl);
    dst[o.a] = src[o.b];
  }
}

__global__ void cast_kernel(DType from, const void* src, DType to, void* dst, int64_t n) {
  for (int64_t i = global_index(); i < n; i += global_stride())
    store_element_from_double(to, dst, i, load_element_as_double(from, src, i));
}

// The hot conversions get dedicated kernels (no per-element dtype switch).
__global__ void cast_f32_bf16_kernel(const float* src, uint16_t* dst, int64_t n) {
  for (int64_t i = global_index(); i < n; i += global_stride()) dst[i] = f32_to_bf16(src[i]);
}
__global__ void cast_bf16_f32_kernel(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = global_index(); i < n; i += global_stride()) dst[i] = bf16_to_f32(src[i]);
}

__global__ void fill_f32_kernel(float* dst, int64_t n, float v) {
  for (int64_t i = global_index(); i < n; i += global_stride()) dst[i] = v;
}
__global__ void fill_kernel(DType t, void* dst, int64_t n, double v) {
  for (int64_t i = global_index(); i < n; i += global_stride())
    store_element_from_double(t, dst, i, v);
}

// low + (high - low) * u with explicit rounding steps: nvcc would otherwise fuse them into an
// FMA, and the values would no longer be bit-identical to the CPU's.
__global__ void fill_uniform_kernel(DType t, void* dst, int64_t n, uint64_t seed, uint64_t offset,
                                    double low, double range) {
  for (int64_t i = global_index(); i < n; i += global_stride()) {
    double u = rng::uniform(seed, offset + static_cast<uint64_t>(i));
    store_element_from_double(t, dst, i, __dadd_rn(low, __dmul_rn(range, u)));
  }
}

// Box-Muller as on the CPU. The uniforms are identical; log/cos may differ from glibc's by an
// ulp, so normals agree to ~1e-15 relative, not bitwise.
__global__ void fill_normal_kernel(DType t, void* dst, int64_t n, uint64_t seed, uint64_t offset,
                                   double mean, double stddev) {
  for (int64_t i = global_index(); i < n; i += global_stride()) {
    uint64_t c = 2 * (offset + static_cast<uint64_t>(i));
    double u1 = __dadd_rn(1.0, -rng::uniform(seed, c));
    double u2 = rng::uniform(seed, c + 1);
    double z = __dmul_rn(sqrt(__dmul_rn(-2.0, log(u1))), cos(__dmul_rn(6.283185307179586, u2)));
    store_element_from_double(t, dst, i, __dadd_rn(mean, __dmul_rn(stddev, z)));
  }
}

__global__ void dropout_mask_kernel(DType t, void* mask, int64_t n, uint64_t seed, uint64_t offset,
                                    double p, double keep_scale) {
  for (int64_t i = global_index(); i < n; i += global_stride()) {
    double u = rng::uniform(seed, offset + static_cast<uint64_t>(i));
    store_element_from_double(t, mask, i, u >= p ? keep_scale : 0.0);
  }
}

}  // namespace

void CudaBackend::copy_strided(DType dtype, void* dst, const Layout& dl, const void* src,
                               const Layout& sl) {
  LETHE_CHECK(dl.ndim == sl.ndim && dl.ndim >= 0 && dl.ndim <= kMaxDims,
              "copy_strided: layouts of different rank (", dl.ndim, " vs ", sl.ndim, ")");
  int64_t n = dl.numel();
  if (n == 0) return;
  unsigned g = grid_for(n);
  switch (dtype_size(dtype)) {
    case 8:
      launch("copy_strided", copy_strided_kernel<uint64_t>, g, kThreads, 0,
             static_cast<uint64_t*>(dst), dl, static_cast<const uint64_t*>(src), sl, n);
      break;
    case 4:
      launch("copy_strided", copy_strided_kernel<uint32_t>, g, kThreads, 0,
             static_cast<uint32_t*>(dst), dl, static_cast<const uint32_t*>(src), sl, n);
      break;
    case 2:
      launch("copy_strided", copy_strided_kernel<uint16_t>, g, kThreads, 0,
             static_cast<uint16_t*>(dst), dl, static_cast<const uint16_t*>(src), sl, n);
      break;
    case 1:
      launch("copy_strided", copy_strided_kernel<uint8_t>, g, kThreads, 0,
             static_cast<uint8_t*>(dst), dl, static_cast<const uint8_t*>(src), sl, n);
      break;
    default: LETHE_FAIL("copy_strided: bad dtype");
  }
}

void CudaBackend::cast(DType from, const void* src, DType to, void* dst, int64_t n) {
  if (n <= 0) return;
  if (from == to) {
    copy_on_device(dst, src, static_cast<size_t>(n) * dtype_size(from));
    return;
  }
  unsigned g = grid_for(n);
  if (from == DType::f32 && to == DType::bf16) {
    launch("cast", cast_f32_bf16_kernel, g, kThreads, 0, static_cast<const float*>(src),
           static_cast<uint16_t*>(dst), n);
  } else if (from == DType::bf16 && to == DType::f32) {
    launch("cast", cast_bf16_f32_kernel, g, kThreads, 0, static_cast<const uint16_t*>(src),
           static_cast<float*>(dst), n);
  } else {
    launch("cast", cast_kernel, g, kThreads, 0, from, src, to, dst, n);
  }
}

void CudaBackend::fill(DType dtype, void* dst, int64_t n, double value) {
  if (n <= 0) return;
  if (dtype == DType::f32) {
    launch("fill", fill_f32_kernel, grid_for(n), kThreads, 0, static_cast<float*>(dst), n,
           static_cast<float>(value));
  } else {
    launch("fill", fill_kernel, grid_for(n), kThreads, 0, dtype, dst, n, value);
  }
}

void CudaBackend::fill_uniform(DType dtype, void* dst, int64_t n, uint64_t seed, uint64_t offset,
                               double low, double high) {
  if (n <= 0) return;
  launch("fill_uniform", fill_uniform_kernel, grid_for(n), kThreads, 0, dtype, dst, n, seed, offset,
         low, high - low);
}

void CudaBackend::fill_normal(DType dtype, void* dst, int64_t n, uint64_t seed, uint64_t offset,
                              double mean, double stddev) {
  if (n <= 0) return;
  launch("fill_normal", fill_normal_kernel, grid_for(n), kThreads, 0, dtype, dst, n, seed, offset,
         mean, stddev);
}

void CudaBackend::dropout_mask(DType dtype, void* mask, int64_t n, uint64_t seed, uint64_t offset,
                               double p) {
  if (n <= 0) return;
  double keep_scale = p < 1.0 ? 1.0 / (1.0 - p) : 0.0;
  launch("dropout_mask", dropout_mask_kernel, grid_for(n), kThreads, 0, dtype, mask, n, seed,
         offset, p, keep_scale);
}

}  // namespace lethe::kernels
