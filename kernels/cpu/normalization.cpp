// CPU layernorm and row softmax / log_softmax, forward and backward: one OpenMP task per block of
// rows, statistics in the compute dtype (f32 or f64) with two passes for a stable variance.

// First: it sets the compile options the row loops need (see simd.h).
#include "kernels/cpu/simd.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/rng.h"

namespace lethe::kernels {

namespace {

// Rows are spread over threads only when there is enough work to pay for the fork.
constexpr int64_t kParallelMin = 1 << 14;

template <typename T>
LETHE_ALWAYS_INLINE T row_sum(const T* x, int64_t n) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += x[i];
  return s;
}

template <typename T>
LETHE_ALWAYS_INLINE T row_max(const T* x, int64_t n) {
  T m = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

template <typename T>
LETHE_SIMD_CLONES void layernorm_forward_row(int64_t cols, const T* xr, const T* gamma,
                                             const T* beta, double eps, T* yr, double* mean_out,
                                             double* rstd_out) {
  // Summing x - x[0] keeps the partial sums small when the row has a large common offset.
  const T x0 = xr[0];
  T shifted = 0;
#pragma omp simd reduction(+ : shifted)
  for (int64_t c = 0; c < cols; ++c) shifted += xr[c] - x0;
  const T mean = x0 + shifted / static_cast<T>(cols);
  T ss = 0;
#pragma omp simd reduction(+ : ss)
  for (int64_t c = 0; c < cols; ++c) ss += (xr[c] - mean) * (xr[c] - mean);
  const T rstd = T(1) / std::sqrt(ss / static_cast<T>(cols) + static_cast<T>(eps));
  if (gamma && beta) {
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) yr[c] = (xr[c] - mean) * rstd * gamma[c] + beta[c];
  } else {
    for (int64_t c = 0; c < cols; ++c) {
      T v = (xr[c] - mean) * rstd;
      yr[c] = (gamma ? v * gamma[c] : v) + (beta ? beta[c] : T(0));
    }
  }
  *mean_out = static_cast<double>(mean);
  *rstd_out = static_cast<double>(rstd);
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * gamma; adds this row's
// dy * xhat and dy to the partial parameter sums when they are given.
template <typename T>
LETHE_SIMD_CLONES void layernorm_backward_row(int64_t cols, const T* xr, const T* gamma,
                                              double mean, double rstd, const T* dyr, T* dxr,
                                              T* xhat, T* g, T* part_dgamma, T* part_dbeta) {
  const T m = static_cast<T>(mean), s = static_cast<T>(rstd);
  T sum_g = 0, sum_gx = 0;
  if (gamma) {
#pragma omp simd reduction(+ : sum_g, sum_gx)
    for (int64_t c = 0; c < cols; ++c) {
      xhat[c] = (xr[c] - m) * s;
      g[c] = dyr[c] * gamma[c];
      sum_g += g[c];
      sum_gx += g[c] * xhat[c];
    }
  } else {
#pragma omp simd reduction(+ : sum_g, sum_gx)
    for (int64_t c = 0; c < cols; ++c) {
      xhat[c] = (xr[c] - m) * s;
      g[c] = dyr[c];
      sum_g += g[c];
      sum_gx += g[c] * xhat[c];
    }
  }
  const T a = sum_g / static_cast<T>(cols), b = sum_gx / static_cast<T>(cols);
  if (dxr) {
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) dxr[c] = s * (g[c] - a - xhat[c] * b);
  }
  if (part_dgamma) {
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) {
      part_dgamma[c] += dyr[c] * xhat[c];
      part_dbeta[c] += dyr[c];
    }
  }
}

template <typename T>
void layernorm_forward_impl(int64_t rows, int64_t cols, const T* x, const T* gamma, const T* beta,
                            double eps, T* y, double* mean, double* rstd) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (int64_t r = 0; r < rows; ++r)
    layernorm_forward_row(cols, x + r * cols, gamma, beta, eps, y + r * cols, mean + r, rstd + r);
}

// Each row's sum x + residual first (one IEEE add per element, as binary add), then its norm.
template <typename T>
void add_layernorm_forward_impl(int64_t rows, int64_t cols, const T* x, const T* residual,
                                const T* gamma, const T* beta, double eps, T* sum, T* y,
                                double* mean, double* rstd, double dropout, uint64_t seed,
                                uint64_t offset) {
  const uint64_t threshold = rng::dropout_threshold(dropout);
  const T keep = static_cast<T>(dropout < 1.0 ? 1.0 / (1.0 - dropout) : 0.0);
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * cols;
    const T* rr = residual + r * cols;
    T* sr = sum + r * cols;
    if (dropout > 0) {
      const uint64_t base = offset + static_cast<uint64_t>(r * cols);
      for (int64_t c = 0; c < cols; ++c) {
        const bool kept = rng::dropout_keeps(seed, base + static_cast<uint64_t>(c), threshold);
        sr[c] = xr[c] * (kept ? keep : T(0)) + rr[c];
      }
    } else {
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) sr[c] = xr[c] + rr[c];
    }
    layernorm_forward_row(cols, sr, gamma, beta, eps, y + r * cols, mean + r, rstd + r);
  }
}

// dgamma/dbeta: one partial sum per fixed block of rows, added in block order at the end, so the
// result is bit-identical whatever the thread count and schedule (a training run reruns exactly).
template <typename T>
void layernorm_backward_impl(int64_t rows, int64_t cols, const T* x, const T* gamma,
                             const double* mean, const double* rstd, const T* dy, T* dx, T* dgamma,
                             T* dbeta) {
  const bool params = dgamma || dbeta;
  constexpr int64_t kBlock = 32;
  const int64_t blocks = (rows + kBlock - 1) / kBlock;
  const size_t part_size = params ? static_cast<size_t>(blocks * cols) : 0;
  std::vector<T> part_dgamma(part_size, T(0)), part_dbeta(part_size, T(0));
#pragma omp parallel if (rows * cols > kParallelMin)
  {
    std::vector<T> xhat(static_cast<size_t>(cols)), g(static_cast<size_t>(cols));
#pragma omp for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      T* pg = params ? part_dgamma.data() + b * cols : nullptr;
      T* pb = params ? part_dbeta.data() + b * cols : nullptr;
      for (int64_t r = b * kBlock; r < std::min(rows, (b + 1) * kBlock); ++r)
        layernorm_backward_row(cols, x + r * cols, gamma, mean[r], rstd[r], dy + r * cols,
                               dx ? dx + r * cols : nullptr, xhat.data(), g.data(), pg, pb);
    }
  }
  for (int64_t b = 0; b < blocks && params; ++b)
    for (int64_t c = 0; c < cols; ++c) {
      if (dgamma) dgamma[c] += part_dgamma[b * cols + c];
      if (dbeta) dbeta[c] += part_dbeta[b * cols + c];
    }
}

template <typename T>
LETHE_SIMD_CLONES void rmsnorm_forward_row(int64_t cols, const T* xr, const T* gamma, double eps,
                                           T* yr, double* rstd_out) {
  T ss = 0;
#pragma omp simd reduction(+ : ss)
  for (int64_t c = 0; c < cols; ++c) ss += xr[c] * xr[c];
  const T rstd = T(1) / std::sqrt(ss / static_cast<T>(cols) + static_cast<T>(eps));
  if (gamma) {
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) yr[c] = gamma[c] * (xr[c] * rstd);
  } else {
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) yr[c] = xr[c] * rstd;
  }
  *rstd_out = static_cast<double>(rstd);
}

template <typename T>
LETHE_SIMD_CLONES void rmsnorm_backward_row(int64_t cols, const T* xr, const T* gamma, double rstd,
                                            const T* dyr, T* dxr, T* part_dgamma) {
  const T s = static_cast<T>(rstd);
  T sum_gx = 0;
#pragma omp simd reduction(+ : sum_gx)
  for (int64_t c = 0; c < cols; ++c) sum_gx += (gamma ? dyr[c] * gamma[c] : dyr[c]) * (xr[c] * s);
  const T b = sum_gx / static_cast<T>(cols);
  if (dxr) {
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c)
      dxr[c] = s * ((gamma ? dyr[c] * gamma[c] : dyr[c]) - (xr[c] * s) * b);
  }
  if (part_dgamma) {
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) part_dgamma[c] += dyr[c] * (xr[c] * s);
  }
}

// dgamma as layernorm_backward_impl's: one partial sum per block of 32 rows, added in block
// order, so the result does not depend on the thread count.
template <typename T>
void rmsnorm_backward_impl(int64_t rows, int64_t cols, const T* x, const T* gamma,
                           const double* rstd, const T* dy, T* dx, T* dgamma) {
  constexpr int64_t kBlock = 32;
  const int64_t blocks = (rows + kBlock - 1) / kBlock;
  std::vector<T> part(dgamma ? static_cast<size_t>(blocks * cols) : 0, T(0));
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t r = b * kBlock; r < std::min(rows, (b + 1) * kBlock); ++r)
      rmsnorm_backward_row(cols, x + r * cols, gamma, rstd[r], dy + r * cols,
                           dx ? dx + r * cols : nullptr, dgamma ? part.data() + b * cols : nullptr);
  for (int64_t b = 0; b < blocks && dgamma; ++b)
    for (int64_t c = 0; c < cols; ++c) dgamma[c] += part[b * cols + c];
}

template <typename T>
LETHE_SIMD_CLONES void softmax_forward_row(int64_t cols, const T* xr, T* yr, bool log) {
  const T m = row_max(xr, cols);
  if (!std::isfinite(m)) {  // all -inf (or a +inf/NaN): let IEEE arithmetic say what it is
    T sum = 0;
    for (int64_t c = 0; c < cols; ++c) sum += std::exp(xr[c]);
    for (int64_t c = 0; c < cols; ++c) yr[c] = log ? xr[c] - std::log(sum) : std::exp(xr[c]) / sum;
    return;
  }
  T sum = 0;
  if (log) {
#pragma omp simd reduction(+ : sum)
    for (int64_t c = 0; c < cols; ++c) sum += exp_fast(xr[c] - m);
    const T shift = m + std::log(sum);
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) yr[c] = xr[c] - shift;
  } else {
#pragma omp simd reduction(+ : sum)
    for (int64_t c = 0; c < cols; ++c) {
      yr[c] = exp_fast(xr[c] - m);
      sum += yr[c];
    }
    const T inv = T(1) / sum;
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) yr[c] *= inv;
  }
}

// softmax: dx = y * (dy - <dy, y>);  log_softmax: dx = dy - exp(y) * sum(dy).
template <typename T>
LETHE_SIMD_CLONES void softmax_backward_row(int64_t cols, const T* yr, const T* dyr, T* dxr,
                                            bool log) {
  if (log) {
    const T s = row_sum(dyr, cols);
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) dxr[c] = dyr[c] - exp_fast(yr[c]) * s;
  } else {
    T s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t c = 0; c < cols; ++c) s += dyr[c] * yr[c];
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) dxr[c] = yr[c] * (dyr[c] - s);
  }
}

template <typename T>
void softmax_forward_impl(int64_t rows, int64_t cols, const T* x, T* y, bool log) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) softmax_forward_row(cols, x + r * cols, y + r * cols, log);
}

template <typename T>
void softmax_backward_impl(int64_t rows, int64_t cols, const T* y, const T* dy, T* dx, bool log) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (int64_t r = 0; r < rows; ++r)
    softmax_backward_row(cols, y + r * cols, dy + r * cols, dx + r * cols, log);
}

}  // namespace

void CpuBackend::layernorm_forward(DType dtype, int64_t rows, int64_t cols, const void* x,
                                   const void* gamma, const void* beta, double eps, void* y,
                                   double* mean, double* rstd) {
  LETHE_CHECK(rows >= 0 && cols > 0, "layernorm_forward: bad size rows=", rows, " cols=", cols);
  dispatch_float(dtype, "layernorm_forward", [&](auto tag) {
    using T = decltype(tag);
    layernorm_forward_impl<T>(rows, cols, static_cast<const T*>(x), static_cast<const T*>(gamma),
                              static_cast<const T*>(beta), eps, static_cast<T*>(y), mean, rstd);
  });
}

void CpuBackend::add_layernorm_forward(DType dtype, int64_t rows, int64_t cols, const void* x,
                                       const void* residual, const void* gamma, const void* beta,
                                       double eps, void* sum, void* y, double* mean, double* rstd,
                                       double dropout, uint64_t seed, uint64_t offset) {
  LETHE_CHECK(rows >= 0 && cols > 0, "add_layernorm_forward: bad size rows=", rows, " cols=", cols);
  LETHE_CHECK(dropout >= 0.0 && dropout < 1.0,
              "add_layernorm_forward: dropout must be in [0, 1), got ", dropout);
  dispatch_float(dtype, "add_layernorm_forward", [&](auto tag) {
    using T = decltype(tag);
    add_layernorm_forward_impl<T>(rows, cols, static_cast<const T*>(x),
                                  static_cast<const T*>(residual), static_cast<const T*>(gamma),
                                  static_cast<const T*>(beta), eps, static_cast<T*>(sum),
                                  static_cast<T*>(y), mean, rstd, dropout, seed, offset);
  });
}

void CpuBackend::rmsnorm_forward(DType dtype, int64_t rows, int64_t cols, const void* x,
                                 const void* gamma, double eps, void* y, double* rstd) {
  LETHE_CHECK(rows >= 0 && cols > 0, "rmsnorm_forward: bad size rows=", rows, " cols=", cols);
  dispatch_float(dtype, "rmsnorm_forward", [&](auto tag) {
    using T = decltype(tag);
    const T* xs = static_cast<const T*>(x);
    T* ys = static_cast<T*>(y);
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
    for (int64_t r = 0; r < rows; ++r)
      rmsnorm_forward_row(cols, xs + r * cols, static_cast<const T*>(gamma), eps, ys + r * cols,
                          rstd + r);
  });
}

void CpuBackend::rmsnorm_backward(DType dtype, int64_t rows, int64_t cols, const void* x,
                                  const void* gamma, const double* rstd, const void* dy, void* dx,
                                  void* dgamma) {
  LETHE_CHECK(rows >= 0 && cols > 0, "rmsnorm_backward: bad size rows=", rows, " cols=", cols);
  dispatch_float(dtype, "rmsnorm_backward", [&](auto tag) {
    using T = decltype(tag);
    rmsnorm_backward_impl<T>(rows, cols, static_cast<const T*>(x), static_cast<const T*>(gamma),
                             rstd, static_cast<const T*>(dy), static_cast<T*>(dx),
                             static_cast<T*>(dgamma));
  });
}

void CpuBackend::layernorm_backward(DType dtype, int64_t rows, int64_t cols, const void* x,
                                    const void* gamma, const double* mean, const double* rstd,
                                    const void* dy, void* dx, void* dgamma, void* dbeta) {
  LETHE_CHECK(rows >= 0 && cols > 0, "layernorm_backward: bad size rows=", rows, " cols=", cols);
  dispatch_float(dtype, "layernorm_backward", [&](auto tag) {
    using T = decltype(tag);
    layernorm_backward_impl<T>(rows, cols, static_cast<const T*>(x), static_cast<const T*>(gamma),
                               mean, rstd, static_cast<const T*>(dy), static_cast<T*>(dx),
                               static_cast<T*>(dgamma), static_cast<T*>(dbeta));
  });
}

void CpuBackend::softmax_forward(DType dtype, int64_t rows, int64_t cols, const void* x, void* y,
                                 bool log) {
  LETHE_CHECK(rows >= 0 && cols > 0, "softmax_forward: bad size rows=", rows, " cols=", cols);
  dispatch_float(dtype, "softmax_forward", [&](auto tag) {
    using T = decltype(tag);
    softmax_forward_impl<T>(rows, cols, static_cast<const T*>(x), static_cast<T*>(y), log);
  });
}

void CpuBackend::softmax_backward(DType dtype, int64_t rows, int64_t cols, const void* y,
                                  const void* dy, void* dx, bool log) {
  LETHE_CHECK(rows >= 0 && cols > 0, "softmax_backward: bad size rows=", rows, " cols=", cols);
  dispatch_float(dtype, "softmax_backward", [&](auto tag) {
    using T = decltype(tag);
    softmax_backward_impl<T>(rows, cols, static_cast<const T*>(y), static_cast<const T*>(dy),
                             static_cast<T*>(dx), log);
  });
}

}  // namespace lethe::kernels
