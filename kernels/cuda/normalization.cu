// CUDA layernorm, RMS norm and softmax, forward and backward: one block per row, warp-shuffle
// reductions, accumulation in the float type of the data (two passes for the variance); gamma/beta
// gradients by column tiles in a fixed order (no atomics). The forward (and the fused residual add
// with dropout, add_layernorm_forward) reads each row from global memory once into shared memory,
// in 16-byte vectors for f32.
#include <type_traits>

#include "kernels/cuda/cuda_common.cuh"

namespace lethe::kernels {

namespace {

unsigned row_blocks(int64_t rows) {
  return static_cast<unsigned>(rows < 65535 ? rows : 65535);
}

// Fewer threads for short rows (a multiple of 32, at most kThreads).
int row_threads(int64_t cols) {
  int64_t t = (cols + 31) / 32 * 32;
  return static_cast<int>(t < 32 ? 32 : (t > kThreads ? kThreads : t));
}

// Dropout on the fused add's x (add_layernorm_forward): element (r, c) is kept, scaled by `keep`,
// iff rng::dropout_keeps(seed, offset + r · cols + c, threshold).
struct RowDropout {
  bool on = false;
  uint64_t seed = 0, offset = 0, threshold = 0;
  double keep = 1.0;
};

// x · factor rounded on its own (never contracted into an FMA with the add that follows: the
// numbers stay those of the separate dropout and add kernels).
__device__ __forceinline__ float mul_rn(float a, float b) {
  return __fmul_rn(a, b);
}
__device__ __forceinline__ double mul_rn(double a, double b) {
  return __dmul_rn(a, b);
}

template <typename T>
__device__ __forceinline__ T dropped(const RowDropout& d, T x, uint64_t counter) {
  if (!d.on) return x;
  const bool kept = rng::dropout_keeps(d.seed, d.offset + counter, d.threshold);
  return mul_rn(x, kept ? static_cast<T>(d.keep) : T(0));
}

// One row's input for the statistics: x, or (the fused add) residual + dropout(x), also written to
// `sum`. With `cache` (dynamic shared memory of cols values) the row is read from global memory
// once, in 16-byte vectors when `vec4` (f32, cols % 4 == 0, x/residual/sum 16-byte aligned), and
// the statistics and the output read the cache; without, they read global memory. Either way the
// reductions below walk the same elements in the same order: the numbers do not depend on the
// path.
template <typename T>
__device__ __forceinline__ const T* load_row(int64_t r, int64_t cols, const T* x, const T* residual,
                                             T* sum, const RowDropout& drop, T* cache, bool vec4) {
  const T* xr = x + r * cols;
  if (!residual && !cache) return xr;
  T* sr = residual ? sum + r * cols : nullptr;
  const T* rr = residual ? residual + r * cols : nullptr;
  const uint64_t base = static_cast<uint64_t>(r * cols);
  bool done = false;
  if constexpr (std::is_same_v<T, float>) {
    if (vec4) {
      const int64_t n4 = cols / 4;
      for (int64_t c4 = threadIdx.x; c4 < n4; c4 += blockDim.x) {
        float4 v = reinterpret_cast<const float4*>(xr)[c4];
        if (residual) {
          const float4 rv = reinterpret_cast<const float4*>(rr)[c4];
          const uint64_t c = base + static_cast<uint64_t>(4 * c4);
          v.x = dropped(drop, v.x, c) + rv.x;
          v.y = dropped(drop, v.y, c + 1) + rv.y;
          v.z = dropped(drop, v.z, c + 2) + rv.z;
          v.w = dropped(drop, v.w, c + 3) + rv.w;
          reinterpret_cast<float4*>(sr)[c4] = v;
        }
        reinterpret_cast<float4*>(cache)[c4] = v;
      }
      done = true;
    }
  }
  if (!done) {
    T* dst = cache ? cache : sr;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      T v = xr[c];
      if (residual) {
        v = dropped(drop, v, base + static_cast<uint64_t>(c)) + rr[c];
        if (cache) sr[c] = v;
      }
      dst[c] = v;
    }
  }
  __syncthreads();
  return cache ? cache : sr;
}

template <typename T>
__global__ void layernorm_forward_kernel(int64_t rows, int64_t cols, const T* x, const T* gamma,
                                         const T* beta, T eps, T* y, double* mean_out,
                                         double* rstd_out, const T* residual, T* sum,
                                         RowDropout drop, bool cached, bool vec4) {
  LETHE_DYNAMIC_SHARED(smem_raw);
  T* cache = cached ? reinterpret_cast<T*>(smem_raw) : nullptr;
  __shared__ T scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = load_row(r, cols, x, residual, sum, drop, cache, vec4);
    T* yr = y + r * cols;
    // Summing x - x[0] keeps partial sums small when the row has a large common offset (as the
    // CPU backend does).
    const T x0 = xr[0];
    T shifted = 0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) shifted += xr[c] - x0;
    T mean = x0 + block_sum(shifted, scratch) / static_cast<T>(cols);
    T sq = 0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      T d = xr[c] - mean;
      sq += d * d;
    }
    T var = block_sum(sq, scratch) / static_cast<T>(cols);
    T rstd = T(1) / dev_sqrt(var + eps);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      T v = (xr[c] - mean) * rstd;
      if (gamma) v *= gamma[c];
      if (beta) v += beta[c];
      yr[c] = v;
    }
    if (threadIdx.x == 0) {
      if (mean_out) mean_out[r] = static_cast<double>(mean);
      if (rstd_out) rstd_out[r] = static_cast<double>(rstd);
    }
    __syncthreads();  // the next row overwrites the cache (and x0 is read from it)
  }
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * gamma.
template <typename T>
__global__ void layernorm_backward_dx_kernel(int64_t rows, int64_t cols, const T* x, const T* gamma,
                                             const double* mean, const double* rstd, const T* dy,
                                             T* dx) {
  __shared__ T scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    const T* dyr = dy + r * cols;
    T mu = static_cast<T>(mean[r]), rs = static_cast<T>(rstd[r]);
    T sum_g = 0, sum_gx = 0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      T g = gamma ? dyr[c] * gamma[c] : dyr[c];
      sum_g += g;
      sum_gx += g * (xr[c] - mu) * rs;
    }
    T mean_g = block_sum(sum_g, scratch) / static_cast<T>(cols);
    T mean_gx = block_sum(sum_gx, scratch) / static_cast<T>(cols);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      T g = gamma ? dyr[c] * gamma[c] : dyr[c];
      T xhat = (xr[c] - mu) * rs;
      dx[r * cols + c] = rs * (g - mean_g - xhat * mean_gx);
    }
  }
}

// dgamma[c] += sum_r dy * xhat, dbeta[c] += sum_r dy: 32 columns per block, 8 row strides.
template <typename T>
__global__ void layernorm_backward_params_kernel(int64_t rows, int64_t cols, const T* x,
                                                 const double* mean, const double* rstd,
                                                 const T* dy, T* dgamma, T* dbeta) {
  __shared__ T part_g[8][33];
  __shared__ T part_b[8][33];
  int64_t c = static_cast<int64_t>(blockIdx.x) * 32 + threadIdx.x;
  T acc_g = 0, acc_b = 0;
  if (c < cols) {
    for (int64_t r = threadIdx.y; r < rows; r += 8) {
      T d = dy[r * cols + c];
      acc_g += d * (x[r * cols + c] - static_cast<T>(mean[r])) * static_cast<T>(rstd[r]);
      acc_b += d;
    }
  }
  part_g[threadIdx.y][threadIdx.x] = acc_g;
  part_b[threadIdx.y][threadIdx.x] = acc_b;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    T tg = 0, tb = 0;
    for (int y = 0; y < 8; ++y) {
      tg += part_g[y][threadIdx.x];
      tb += part_b[y][threadIdx.x];
    }
    if (dgamma) dgamma[c] += tg;
    if (dbeta) dbeta[c] += tb;
  }
}

// RMS norm, one block per row: y = gamma · (x · rstd), rstd = 1/√(mean(x²) + eps).
template <typename T>
__global__ void rmsnorm_forward_kernel(int64_t rows, int64_t cols, const T* x, const T* gamma,
                                       T eps, T* y, double* rstd_out) {
  __shared__ T scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    T ss = 0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) ss += xr[c] * xr[c];
    const T rstd = T(1) / dev_sqrt(block_sum(ss, scratch) / static_cast<T>(cols) + eps);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      y[r * cols + c] = gamma ? gamma[c] * (xr[c] * rstd) : xr[c] * rstd;
    if (threadIdx.x == 0 && rstd_out) rstd_out[r] = static_cast<double>(rstd);
  }
}

// dx = rstd · (g − x̂ · mean(g · x̂)), g = dy · gamma, x̂ = x · rstd; one block per row.
template <typename T>
__global__ void rmsnorm_backward_dx_kernel(int64_t rows, int64_t cols, const T* x, const T* gamma,
                                           const double* rstd, const T* dy, T* dx) {
  __shared__ T scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    const T* dyr = dy + r * cols;
    const T s = static_cast<T>(rstd[r]);
    T sum_gx = 0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      sum_gx += (gamma ? dyr[c] * gamma[c] : dyr[c]) * (xr[c] * s);
    const T b = block_sum(sum_gx, scratch) / static_cast<T>(cols);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      dx[r * cols + c] = s * ((gamma ? dyr[c] * gamma[c] : dyr[c]) - (xr[c] * s) * b);
  }
}

// dgamma[c] += Σ_r dy · x · rstd: 32 columns per block, 8 row strides, summed in a fixed order.
template <typename T>
__global__ void rmsnorm_backward_gamma_kernel(int64_t rows, int64_t cols, const T* x,
                                              const double* rstd, const T* dy, T* dgamma) {
  __shared__ T part[8][33];
  const int64_t c = static_cast<int64_t>(blockIdx.x) * 32 + threadIdx.x;
  T acc = 0;
  if (c < cols)
    for (int64_t r = threadIdx.y; r < rows; r += 8)
      acc += dy[r * cols + c] * (x[r * cols + c] * static_cast<T>(rstd[r]));
  part[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    T total = 0;
    for (int k = 0; k < 8; ++k) total += part[k][threadIdx.x];
    dgamma[c] += total;
  }
}

template <typename T>
__global__ void softmax_forward_kernel(int64_t rows, int64_t cols, const T* x, T* y, bool log) {
  __shared__ T scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    T m = dev_neg_inf<T>();
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) m = fmax(m, xr[c]);
    m = block_max(m, scratch);
    if (!isfinite(m)) m = 0;  // all -inf (or +inf/NaN): let IEEE arithmetic say what it is
    T s = 0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) s += dev_exp(xr[c] - m);
    s = block_sum(s, scratch);
    if (log) {
      T lse = m + dev_log(s);
      for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) yr[c] = xr[c] - lse;
    } else {
      T inv = T(1) / s;
      for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) yr[c] = dev_exp(xr[c] - m) * inv;
    }
  }
}

// softmax: dx = y * (dy - sum(dy * y)); log_softmax: dx = dy - exp(y) * sum(dy).
template <typename T>
__global__ void softmax_backward_kernel(int64_t rows, int64_t cols, const T* y, const T* dy, T* dx,
                                        bool log) {
  __shared__ T scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* yr = y + r * cols;
    const T* dyr = dy + r * cols;
    T s = 0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) s += log ? dyr[c] : dyr[c] * yr[c];
    s = block_sum(s, scratch);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      dx[r * cols + c] = log ? dyr[c] - dev_exp(yr[c]) * s : yr[c] * (dyr[c] - s);
  }
}

}  // namespace

namespace {

bool aligned16(const void* p) {
  return p == nullptr || reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

// Launches the forward: the row cached in shared memory when it fits the device's opt-in limit,
// 16-byte loads when the f32 data allows them.
template <typename T>
void launch_layernorm(CudaBackend& be, const char* what, int64_t rows, int64_t cols, const T* x,
                      const T* gamma, const T* beta, double eps, T* y, double* mean, double* rstd,
                      const T* residual, T* sum, const RowDropout& drop) {
  const size_t bytes = static_cast<size_t>(cols) * sizeof(T);
  const bool cached = bytes <= be.props().sharedMemPerBlockOptin;
  if (cached && bytes > 48 * 1024)
    LETHE_CUDA_CHECK(cudaFuncSetAttribute(layernorm_forward_kernel<T>,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(bytes)));
  const bool vec4 = std::is_same_v<T, float> && cached && cols % 4 == 0 && aligned16(x) &&
                    aligned16(residual) && aligned16(sum);
  launch(what, layernorm_forward_kernel<T>, row_blocks(rows), row_threads(cols), cached ? bytes : 0,
         rows, cols, x, gamma, beta, static_cast<T>(eps), y, mean, rstd, residual, sum, drop,
         cached, vec4);
}

}  // namespace

void CudaBackend::layernorm_forward(DType dtype, int64_t rows, int64_t cols, const void* x,
                                    const void* gamma, const void* beta, double eps, void* y,
                                    double* mean, double* rstd) {
  cuda_dispatch_float(dtype, "layernorm_forward", [&](auto tag) {
    using T = decltype(tag);
    if (rows <= 0 || cols <= 0) return;
    launch_layernorm<T>(*this, "layernorm_forward", rows, cols, static_cast<const T*>(x),
                        static_cast<const T*>(gamma), static_cast<const T*>(beta), eps,
                        static_cast<T*>(y), mean, rstd, nullptr, nullptr, RowDropout{});
  });
}

void CudaBackend::add_layernorm_forward(DType dtype, int64_t rows, int64_t cols, const void* x,
                                        const void* residual, const void* gamma, const void* beta,
                                        double eps, void* sum, void* y, double* mean, double* rstd,
                                        double dropout, uint64_t seed, uint64_t offset) {
  LETHE_CHECK(dropout >= 0.0 && dropout < 1.0,
              "add_layernorm_forward: dropout must be in [0, 1), got ", dropout);
  cuda_dispatch_float(dtype, "add_layernorm_forward", [&](auto tag) {
    using T = decltype(tag);
    if (rows <= 0 || cols <= 0) return;
    RowDropout drop;
    if (dropout > 0.0) {
      drop.on = true;
      drop.seed = seed;
      drop.offset = offset;
      drop.threshold = rng::dropout_threshold(dropout);
      drop.keep = 1.0 / (1.0 - dropout);
    }
    launch_layernorm<T>(*this, "add_layernorm_forward", rows, cols, static_cast<const T*>(x),
                        static_cast<const T*>(gamma), static_cast<const T*>(beta), eps,
                        static_cast<T*>(y), mean, rstd, static_cast<const T*>(residual),
                        static_cast<T*>(sum), drop);
  });
}

void CudaBackend::rmsnorm_forward(DType dtype, int64_t rows, int64_t cols, const void* x,
                                  const void* gamma, double eps, void* y, double* rstd) {
  cuda_dispatch_float(dtype, "rmsnorm_forward", [&](auto tag) {
    using T = decltype(tag);
    if (rows <= 0 || cols <= 0) return;
    launch("rmsnorm_forward", rmsnorm_forward_kernel<T>, row_blocks(rows), row_threads(cols), 0,
           rows, cols, static_cast<const T*>(x), static_cast<const T*>(gamma), static_cast<T>(eps),
           static_cast<T*>(y), rstd);
  });
}

void CudaBackend::rmsnorm_backward(DType dtype, int64_t rows, int64_t cols, const void* x,
                                   const void* gamma, const double* rstd, const void* dy, void* dx,
                                   void* dgamma) {
  cuda_dispatch_float(dtype, "rmsnorm_backward", [&](auto tag) {
    using T = decltype(tag);
    if (rows <= 0 || cols <= 0) return;
    if (dx)
      launch("rmsnorm_backward (dx)", rmsnorm_backward_dx_kernel<T>, row_blocks(rows),
             row_threads(cols), 0, rows, cols, static_cast<const T*>(x),
             static_cast<const T*>(gamma), rstd, static_cast<const T*>(dy), static_cast<T*>(dx));
    if (dgamma)
      launch("rmsnorm_backward (dgamma)", rmsnorm_backward_gamma_kernel<T>,
             static_cast<unsigned>((cols + 31) / 32), dim3(32, 8), 0, rows, cols,
             static_cast<const T*>(x), rstd, static_cast<const T*>(dy), static_cast<T*>(dgamma));
  });
}

void CudaBackend::layernorm_backward(DType dtype, int64_t rows, int64_t cols, const void* x,
                                     const void* gamma, const double* mean, const double* rstd,
                                     const void* dy, void* dx, void* dgamma, void* dbeta) {
  cuda_dispatch_float(dtype, "layernorm_backward", [&](auto tag) {
    using T = decltype(tag);
    if (rows <= 0 || cols <= 0) return;
    const T* xs = static_cast<const T*>(x);
    const T* dys = static_cast<const T*>(dy);
    if (dx) {
      launch("layernorm_backward (dx)", layernorm_backward_dx_kernel<T>, row_blocks(rows),
             row_threads(cols), 0, rows, cols, xs, static_cast<const T*>(gamma), mean, rstd, dys,
             static_cast<T*>(dx));
    }
    if (dgamma || dbeta) {
      unsigned tiles = static_cast<unsigned>((cols + 31) / 32);
      launch("layernorm_backward (dgamma, dbeta)", layernorm_backward_params_kernel<T>, tiles,
             dim3(32, 8), 0, rows, cols, xs, mean, rstd, dys, static_cast<T*>(dgamma),
             static_cast<T*>(dbeta));
    }
  });
}

void CudaBackend::softmax_forward(DType dtype, int64_t rows, int64_t cols, const void* x, void* y,
                                  bool log) {
  cuda_dispatch_float(dtype, "softmax_forward", [&](auto tag) {
    using T = decltype(tag);
    if (rows <= 0 || cols <= 0) return;
    launch("softmax_forward", softmax_forward_kernel<T>, row_blocks(rows), row_threads(cols), 0,
           rows, cols, static_cast<const T*>(x), static_cast<T*>(y), log);
  });
}

void CudaBackend::softmax_backward(DType dtype, int64_t rows, int64_t cols, const void* y,
                                   const void* dy, void* dx, bool log) {
  cuda_dispatch_float(dtype, "softmax_backward", [&](auto tag) {
    using T = decltype(tag);
    if (rows <= 0 || cols <= 0) return;
    launch("softmax_backward", softmax_backward_kernel<T>, row_blocks(rows), row_threads(cols), 0,
           rows, cols, static_cast<const T*>(y), static_cast<const T*>(dy), static_cast<T*>(dx),
           log);
  });
}

}  // namespace lethe::kernels
