// Internal to kernels/cuda: the CudaBackend class, error-checking macros, launch helpers and
// device-side reductions shared by the .cu files. C++17 only; never included by engine code.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#ifdef LETHE_CUDA_EMULATED
#include "kernels/cuda/emu/cuda_emu.h"
#endif

#include "kernels/backend.h"
#include "kernels/error.h"
#include "kernels/rng.h"

namespace lethe::kernels {

// Every CUDA runtime call goes through this: failures become lethe::Error naming the call.
#define LETHE_CUDA_CHECK(call)                                                               \
  do {                                                                                       \
    cudaError_t lethe_err_ = (call);                                                         \
    if (lethe_err_ != cudaSuccess)                                                           \
      LETHE_FAIL("CUDA error in ", #call, " (", __FILE__, ":", __LINE__,                     \
                 "): ", cudaGetErrorName(lethe_err_), ": ", cudaGetErrorString(lethe_err_)); \
  } while (0)

#define LETHE_CUBLAS_CHECK(call)                                                                 \
  do {                                                                                           \
    cublasStatus_t lethe_st_ = (call);                                                           \
    if (lethe_st_ != CUBLAS_STATUS_SUCCESS)                                                      \
      LETHE_FAIL("cuBLAS error in ", #call, " (", __FILE__, ":", __LINE__,                       \
                 "): ", cublasGetStatusName(lethe_st_), ": ", cublasGetStatusString(lethe_st_)); \
  } while (0)

// Checks the launch of the kernel named `what` (bad configuration, missing sm_90 image, ...).
void check_launch(const char* what);

// The one way a kernel starts: kernel<<<grid, block, shared>>>(args...) under nvcc, the
// emulator's launch (kernels/cuda/emu) when the .cu files are compiled as C++; then the launch is
// checked, and a failure names `what`.
template <typename... P, typename... A>
void launch(const char* what, void (*kernel)(P...), dim3 grid, dim3 block, size_t shared,
            A&&... args) {
#ifdef LETHE_CUDA_EMULATED
  emu::launch_kernel(what, kernel, grid, block, shared, std::forward<A>(args)...);
#else
  kernel<<<grid, block, shared>>>(std::forward<A>(args)...);
#endif
  check_launch(what);
}

// `#pragma unroll` for nvcc; nothing for the host compiler of the emulated build.
#ifdef LETHE_CUDA_EMULATED
#define LETHE_UNROLL
#else
#define LETHE_UNROLL _Pragma("unroll")
#endif

// `extern __shared__` dynamic shared memory as `unsigned char* name`, 16-byte aligned.
#ifdef LETHE_CUDA_EMULATED
#define LETHE_DYNAMIC_SHARED(name) unsigned char* name = ::lethe::emu::dynamic_shared_memory()
#else
#define LETHE_DYNAMIC_SHARED(name) extern __shared__ __align__(16) unsigned char name[]
#endif

// Calls fn(T{}) with T = float or double for a float dtype; throws for anything else.
template <typename Fn>
auto cuda_dispatch_float(DType dtype, const char* what, Fn&& fn) {
  switch (dtype) {
    case DType::f32: return fn(float{});
    case DType::f64: return fn(double{});
    default:
      LETHE_FAIL(what, ": dtype ", dtype_name(dtype), " not supported on CUDA (use f32 or f64)");
  }
}

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n elements (capped; the loop covers the rest).
inline unsigned grid_for(int64_t n, int threads = kThreads) {
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  if (blocks > 65536) blocks = 65536;
  return static_cast<unsigned>(blocks);
}

// ---- device helpers -----------------------------------------------------------------------

__device__ __forceinline__ int64_t global_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t global_stride() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

__device__ __forceinline__ float dev_exp(float x) {
  return expf(x);
}
__device__ __forceinline__ double dev_exp(double x) {
  return exp(x);
}
__device__ __forceinline__ float dev_log(float x) {
  return logf(x);
}
__device__ __forceinline__ double dev_log(double x) {
  return log(x);
}
__device__ __forceinline__ float dev_log1p(float x) {
  return log1pf(x);
}
__device__ __forceinline__ double dev_log1p(double x) {
  return log1p(x);
}
__device__ __forceinline__ float dev_sqrt(float x) {
  return sqrtf(x);
}
__device__ __forceinline__ double dev_sqrt(double x) {
  return sqrt(x);
}
__device__ __forceinline__ float dev_tanh(float x) {
  return tanhf(x);
}
__device__ __forceinline__ double dev_tanh(double x) {
  return tanh(x);
}
__device__ __forceinline__ float dev_erf(float x) {
  return erff(x);
}
__device__ __forceinline__ double dev_erf(double x) {
  return erf(x);
}
__device__ __forceinline__ float dev_abs(float x) {
  return fabsf(x);
}
__device__ __forceinline__ double dev_abs(double x) {
  return fabs(x);
}

template <typename T>
__device__ __forceinline__ T dev_neg_inf() {
  return -static_cast<T>(INFINITY);
}

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  return v;
}
template <typename T>
__device__ __forceinline__ T warp_max(T v) {
  for (int off = 16; off > 0; off >>= 1) v = fmax(v, __shfl_down_sync(0xffffffffu, v, off));
  return v;
}

// Sum over the block, returned to every thread. blockDim.x a multiple of 32, at most 1024.
// `scratch` holds 32 values; the call ends with a barrier so scratch may be reused at once.
template <typename T>
__device__ T block_sum(T v, T* scratch) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T total = 0;
  for (int w = 0; w < warps; ++w) total += scratch[w];  // same order in every thread
  __syncthreads();
  return total;
}
template <typename T>
__device__ T block_max(T v, T* scratch) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T m = scratch[0];
  for (int w = 1; w < warps; ++w) m = fmax(m, scratch[w]);
  __syncthreads();
  return m;
}

// ---- the backend ----------------------------------------------------------------------------

// A caching allocator: blocks are kept in free lists keyed by their rounded size, so a training
// step that repeats the same shapes never calls cudaMalloc after its first iteration.
class CachingAllocator {
 public:
  void* allocate(size_t bytes);
  void deallocate(void* ptr);
  void release_cached();  // cudaFree every cached block (after an out-of-memory)
  void set_poison(bool on) { poison_ = on; }
  size_t cached_bytes();
  static size_t round_size(size_t bytes);
  // Bytes handed out and not yet freed, and their high-water mark since reset_peak() (which
  // returns the live bytes it starts from).
  size_t peak_bytes() {
    std::lock_guard<std::mutex> lock(mu_);
    return peak_bytes_;
  }
  size_t reset_peak() {
    std::lock_guard<std::mutex> lock(mu_);
    peak_bytes_ = live_bytes_;
    return live_bytes_;
  }

 private:
  void note_live(size_t size) {  // under mu_
    live_bytes_ += size;
    if (live_bytes_ > peak_bytes_) peak_bytes_ = live_bytes_;
  }
  size_t live_bytes_ = 0, peak_bytes_ = 0;
  std::mutex mu_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  std::unordered_map<void*, size_t> live_;
  bool poison_ = false;
};

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device);
  const char* name() const override { return "cuda"; }
  void* allocate(size_t bytes) override;
  void deallocate(void* ptr, size_t bytes) override;
  void copy_to_host(void* host_dst, const void* dev_src, size_t bytes) override;
  void copy_from_host(void* dev_dst, const void* host_src, size_t bytes) override;
  void copy_on_device(void* dst, const void* src, size_t bytes) override;
  void synchronize() override;

  void copy_strided(DType dtype, void* dst, const Layout& dst_layout, const void* src,
                    const Layout& src_layout) override;
  void cast(DType from, const void* src, DType to, void* dst, int64_t n) override;
  void fill(DType dtype, void* dst, int64_t n, double value) override;
  void fill_uniform(DType dtype, void* dst, int64_t n, uint64_t seed, uint64_t offset, double low,
                    double high) override;
  void fill_normal(DType dtype, void* dst, int64_t n, uint64_t seed, uint64_t offset, double mean,
                   double stddev) override;
  void dropout_mask(DType dtype, void* mask, int64_t n, uint64_t seed, uint64_t offset,
                    double p) override;

  void unary(UnaryOp op, DType dtype, int64_t n, const void* x, void* y) override;
  void unary_backward(UnaryOp op, DType dtype, int64_t n, const void* x, const void* y,
                      const void* dy, void* dx) override;
  void binary(BinaryOp op, DType dtype, void* out, const Layout& out_layout, const void* a,
              const Layout& a_layout, const void* b, const Layout& b_layout) override;
  void axpby(DType dtype, int64_t n, double alpha, const void* x, double beta, void* y) override;
  void reduce_sum(DType dtype, const void* in, int64_t outer, int64_t reduce, int64_t inner,
                  void* out) override;
  double dot(DType dtype, int64_t n, const void* x, const void* y) override;
  void gram(DType dtype, int64_t n, int k, const void* const* bufs, double* out) override;

  void gemm(const GemmArgs& args) override;

  void layernorm_forward(DType dtype, int64_t rows, int64_t cols, const void* x, const void* gamma,
                         const void* beta, double eps, void* y, double* mean,
                         double* rstd) override;
  void add_layernorm_forward(DType dtype, int64_t rows, int64_t cols, const void* x,
                             const void* residual, const void* gamma, const void* beta, double eps,
                             void* sum, void* y, double* mean, double* rstd, double dropout,
                             uint64_t seed, uint64_t offset) override;
  void rmsnorm_forward(DType dtype, int64_t rows, int64_t cols, const void* x, const void* gamma,
                       double eps, void* y, double* rstd) override;
  void rmsnorm_backward(DType dtype, int64_t rows, int64_t cols, const void* x, const void* gamma,
                        const double* rstd, const void* dy, void* dx, void* dgamma) override;
  void layernorm_backward(DType dtype, int64_t rows, int64_t cols, const void* x, const void* gamma,
                          const double* mean, const double* rstd, const void* dy, void* dx,
                          void* dgamma, void* dbeta) override;
  void softmax_forward(DType dtype, int64_t rows, int64_t cols, const void* x, void* y,
                       bool log) override;
  void softmax_backward(DType dtype, int64_t rows, int64_t cols, const void* y, const void* dy,
                        void* dx, bool log) override;

  void attention_forward(const AttentionArgs& args) override;
  void attention_backward(const AttentionBackwardArgs& args) override;

  void embedding_forward(DType dtype, int64_t n, int64_t dim, const int64_t* ids, const void* table,
                         void* out) override;
  void embedding_backward(DType dtype, int64_t n, int64_t dim, const int64_t* ids, const void* dout,
                          void* dtable, int64_t padding_idx) override;

  void rope(const RopeArgs& args) override;
  void cross_entropy_forward(const CrossEntropyArgs& args) override;
  void cross_entropy_backward(const CrossEntropyBackwardArgs& args) override;
  void cross_entropy_fused(const CrossEntropyBackwardArgs& args) override;
  void kl_div_forward(DType dtype, int64_t rows, int64_t vocab, const void* ref_logits,
                      const void* logits, void* out) override;
  void kl_div_backward(DType dtype, int64_t rows, int64_t vocab, const void* ref_logits,
                       const void* logits, const void* dout, void* dlogits, void* dref) override;

  void adamw_step(int64_t n, float* param, const float* grad, float* m, float* v, double lr,
                  double beta1, double beta2, double eps, double weight_decay,
                  double bias_correction1, double bias_correction2) override;
  void sgd_step(int64_t n, float* param, const float* grad, float* momentum_buf, double lr,
                double momentum, double dampening, double weight_decay, bool nesterov,
                bool first_step) override;

  CachingAllocator& allocator() { return allocator_; }
  cublasHandle_t cublas() const { return cublas_; }
  const cudaDeviceProp& props() const { return props_; }

 private:
  CachingAllocator allocator_;
  cublasHandle_t cublas_ = nullptr;
  cudaDeviceProp props_{};
};

// ---- flash attention (flash_attention.cu; attention.cu dispatches) ---------------------------

// The dropout factor of probability (row, j): 1 without dropout, else 1/(1 − p) or 0
// (AttentionArgs::dropout; row = (b · H + h) · Tq + i).
template <typename T>
__device__ __forceinline__ T drop_factor(const AttentionArgs& a, int64_t row, int64_t j) {
  if (a.dropout <= 0.0) return T(1);
  const uint64_t c = a.dropout_offset + static_cast<uint64_t>(row * a.kv_len + j);
  return rng::dropout_keeps(a.dropout_seed, c, rng::dropout_threshold(a.dropout))
             ? static_cast<T>(1.0 / (1.0 - a.dropout))
             : T(0);
}

// Grouped-query attention: k and v's heads (AttentionArgs::kv_heads, 0 = heads), the query heads
// per kv head, and the (batch, kv head) matrix that query matrix bh = b·H + h reads.
__host__ __device__ __forceinline__ int64_t kv_heads_of(const AttentionArgs& a) {
  return a.kv_heads > 0 ? a.kv_heads : a.heads;
}
__host__ __device__ __forceinline__ int64_t group_of(const AttentionArgs& a) {
  return a.heads / kv_heads_of(a);
}
__host__ __device__ __forceinline__ int64_t kv_matrix(const AttentionArgs& a, int64_t bh) {
  return (bh / a.heads) * kv_heads_of(a) + (bh % a.heads) / group_of(a);
}

constexpr int kMaxHeadDim = 128;  // the tiled kernels' largest head dim
// f32/f64, 1 <= head_dim <= kMaxHeadDim, batch · heads within one grid dimension.
bool flash_attention_supported(const AttentionArgs& a);
void flash_attention_forward(CudaBackend& be, const AttentionArgs& a);
void flash_attention_backward(CudaBackend& be, const AttentionBackwardArgs& a);

// Scratch device memory from the caching allocator, returned to it on scope exit.
class DeviceScratch {
 public:
  DeviceScratch(CudaBackend& be, size_t bytes) : be_(be), bytes_(bytes) {
    ptr_ = bytes ? be.allocate(bytes) : nullptr;
  }
  ~DeviceScratch() {
    if (ptr_) be_.deallocate(ptr_, bytes_);
  }
  DeviceScratch(const DeviceScratch&) = delete;
  DeviceScratch& operator=(const DeviceScratch&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  CudaBackend& be_;
  size_t bytes_;
  void* ptr_ = nullptr;
};

}  // namespace lethe::kernels
