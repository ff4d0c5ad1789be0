// CUDA elementwise maps, broadcasting binary ops, axpby, reductions (double accumulation), dot
// products and the Gram matrix of K flat buffers. Reductions are deterministic (no atomics).
#include <vector>

#include "kernels/cuda/cuda_common.cuh"

namespace lethe::kernels {

namespace {

template <typename T>
__device__ __forceinline__ T unary_value(UnaryOp op, T x) {
  switch (op) {
    case UnaryOp::neg: return -x;
    case UnaryOp::relu: return x > T(0) ? x : T(0);
    case UnaryOp::gelu: return T(0.5) * x * (T(1) + dev_erf(x * T(0.70710678118654752440)));
    case UnaryOp::exp: return dev_exp(x);
    case UnaryOp::log: return dev_log(x);
    case UnaryOp::sqrt: return dev_sqrt(x);
    case UnaryOp::square: return x * x;
    case UnaryOp::tanh: return dev_tanh(x);
    case UnaryOp::sigmoid: return T(1) / (T(1) + dev_exp(-x));
    case UnaryOp::log_sigmoid: return fmin(x, T(0)) - dev_log1p(dev_exp(-dev_abs(x)));
    case UnaryOp::silu: return x / (T(1) + dev_exp(-x));
  }
  return x;
}

template <typename T>
__device__ __forceinline__ T unary_derivative(UnaryOp op, T x, T y) {
  switch (op) {
    case UnaryOp::neg: return T(-1);
    case UnaryOp::relu: return x > T(0) ? T(1) : T(0);
    case UnaryOp::gelu: {
      T cdf = T(0.5) * (T(1) + dev_erf(x * T(0.70710678118654752440)));
      T pdf = dev_exp(T(-0.5) * x * x) * T(0.39894228040143267794);
      return cdf + x * pdf;
    }
    case UnaryOp::exp: return y;
    case UnaryOp::log: return T(1) / x;
    case UnaryOp::sqrt: return T(0.5) / y;
    case UnaryOp::square: return T(2) * x;
    case UnaryOp::tanh: return T(1) - y * y;
    case UnaryOp::sigmoid: return y * (T(1) - y);
    case UnaryOp::log_sigmoid: return T(1) / (T(1) + dev_exp(x));
    case UnaryOp::silu: {
      const T s = T(1) / (T(1) + dev_exp(-x));
      return s * (T(1) + x * (T(1) - s));
    }
  }
  return T(0);
}

template <typename T>
__device__ __forceinline__ T binary_value(BinaryOp op, T a, T b) {
  switch (op) {
    case BinaryOp::add: return a + b;
    case BinaryOp::sub: return a - b;
    case BinaryOp::mul: return a * b;
    case BinaryOp::div: return a / b;
  }
  return a;
}

template <typename T>
__global__ void unary_kernel(UnaryOp op, int64_t n, const T* x, T* y) {
  for (int64_t i = global_index(); i < n; i += global_stride()) y[i] = unary_value(op, x[i]);
}

template <typename T>
__global__ void unary_backward_kernel(UnaryOp op, int64_t n, const T* x, const T* y, const T* dy,
                                      T* dx) {
  for (int64_t i = global_index(); i < n; i += global_stride())
    dx[i] = dy[i] * unary_derivative(op, x ? x[i] : T(0), y ? y[i] : T(0));
}

template <typename T>
__global__ void binary_contiguous_kernel(BinaryOp op, int64_t n, T* out, const T* a, const T* b) {
  for (int64_t i = global_index(); i < n; i += global_stride())
    out[i] = binary_value(op, a[i], b[i]);
}

template <typename T>
__global__ void binary_strided_kernel(BinaryOp op, int64_t n, T* out, Layout ol, const T* a,
                                      Layout al, const T* b, Layout bl) {
  for (int64_t i = global_index(); i < n; i += global_stride()) {
    int64_t rem = i, oo = 0, ao = 0, bo = 0;
    for (int d = ol.ndim - 1; d >= 0; --d) {
      int64_t idx = rem % ol.shape[d];
      rem /= ol.shape[d];
      oo += idx * ol.stride[d];
      ao += idx * al.stride[d];
      bo += idx * bl.stride[d];
    }
    out[oo] = binary_value(op, a[ao], b[bo]);
  }
}

template <typename T>
__global__ void axpby_kernel(int64_t n, T alpha, const T* x, T beta, T* y, bool beta_zero) {
  for (int64_t i = global_index(); i < n; i += global_stride())
    y[i] = beta_zero ? alpha * x[i] : alpha * x[i] + beta * y[i];
}

// Row sums (inner == 1): one block per row, double accumulation.
template <typename T>
__global__ void row_sum_kernel(const T* in, int64_t rows, int64_t cols, T* out) {
  __shared__ double scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* row = in + r * cols;
    double acc = 0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) acc += static_cast<double>(row[c]);
    acc = block_sum(acc, scratch);
    if (threadIdx.x == 0) out[r] = static_cast<T>(acc);
  }
}

// Sums over the middle dim of [outer, reduce, inner]: a 32 x 8 block covers 32 inner columns,
// its 8 thread rows stride over `reduce`, and shared memory folds the 8 partial sums.
template <typename T>
__global__ void middle_sum_kernel(const T* in, int64_t outer, int64_t reduce, int64_t inner,
                                  T* out) {
  __shared__ double part[8][33];
  int64_t col = static_cast<int64_t>(blockIdx.x) * 32 + threadIdx.x;
  for (int64_t o = blockIdx.y; o < outer; o += gridDim.y) {
    double acc = 0;
    if (col < inner)
      for (int64_t r = threadIdx.y; r < reduce; r += 8)
        acc += static_cast<double>(in[(o * reduce + r) * inner + col]);
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && col < inner) {
      double total = 0;
      for (int y = 0; y < 8; ++y) total += part[y][threadIdx.x];
      out[o * inner + col] = static_cast<T>(total);
    }
    __syncthreads();
  }
}

constexpr int kMaxGram = 16;
constexpr int kMaxPairs = kMaxGram * (kMaxGram + 1) / 2;
// Passed by value as a kernel parameter: the buffers and which two of them each pair multiplies.
struct GramPairs {
  const void* buf[kMaxGram];
  int first[kMaxPairs];
  int second[kMaxPairs];
};

// partial[pair * gridDim.x + block] = this block's share of <buf[first], buf[second]> for the
// pair blockIdx.y; the host adds the partials in a fixed order (deterministic).
template <typename T>
__global__ void gram_partial_kernel(int64_t n, GramPairs pairs, double* partial) {
  __shared__ double scratch[32];
  const T* a = static_cast<const T*>(pairs.buf[pairs.first[blockIdx.y]]);
  const T* b = static_cast<const T*>(pairs.buf[pairs.second[blockIdx.y]]);
  double acc = 0;
  for (int64_t i = global_index(); i < n; i += global_stride())
    acc += static_cast<double>(a[i]) * static_cast<double>(b[i]);
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) partial[blockIdx.y * gridDim.x + blockIdx.x] = acc;
}

// Runs the pairs and returns their sums (pair-major).
template <typename T>
std::vector<double> gram_pairs(CudaBackend& be, int64_t n, const GramPairs& pairs, int count) {
  unsigned blocks = grid_for(n) < 512 ? grid_for(n) : 512;
  DeviceScratch partial(be, static_cast<size_t>(count) * blocks * sizeof(double));
  launch("gram/dot", gram_partial_kernel<T>, dim3(blocks, static_cast<unsigned>(count)), kThreads,
         0, n, pairs, partial.as<double>());
  std::vector<double> host(static_cast<size_t>(count) * blocks);
  be.copy_to_host(host.data(), partial.as<double>(), host.size() * sizeof(double));
  std::vector<double> sums(static_cast<size_t>(count), 0.0);
  for (int p = 0; p < count; ++p)
    for (unsigned b = 0; b < blocks; ++b) sums[p] += host[static_cast<size_t>(p) * blocks + b];
  return sums;
}

}  // namespace

void CudaBackend::unary(UnaryOp op, DType dtype, int64_t n, const void* x, void* y) {
  cuda_dispatch_float(dtype, "unary", [&](auto tag) {
    using T = decltype(tag);
    if (n <= 0) return;
    launch("unary", unary_kernel<T>, grid_for(n), kThreads, 0, op, n, static_cast<const T*>(x),
           static_cast<T*>(y));
  });
}

void CudaBackend::unary_backward(UnaryOp op, DType dtype, int64_t n, const void* x, const void* y,
                                 const void* dy, void* dx) {
  cuda_dispatch_float(dtype, "unary_backward", [&](auto tag) {
    using T = decltype(tag);
    if (n <= 0) return;
    launch("unary_backward", unary_backward_kernel<T>, grid_for(n), kThreads, 0, op, n,
           static_cast<const T*>(x), static_cast<const T*>(y), static_cast<const T*>(dy),
           static_cast<T*>(dx));
  });
}

namespace {
bool is_dense(const Layout& l) {
  int64_t expect = 1;
  for (int d = l.ndim - 1; d >= 0; --d) {
    if (l.shape[d] != 1 && l.stride[d] != expect) return false;
    expect *= l.shape[d];
  }
  return true;
}
}  // namespace

void CudaBackend::binary(BinaryOp op, DType dtype, void* out, const Layout& ol, const void* a,
                         const Layout& al, const void* b, const Layout& bl) {
  cuda_dispatch_float(dtype, "binary", [&](auto tag) {
    using T = decltype(tag);
    LETHE_CHECK(ol.ndim == al.ndim && ol.ndim == bl.ndim, "binary: layouts of different rank");
    int64_t n = ol.numel();
    if (n == 0) return;
    T* o = static_cast<T*>(out);
    const T* pa = static_cast<const T*>(a);
    const T* pb = static_cast<const T*>(b);
    if (is_dense(ol) && is_dense(al) && is_dense(bl)) {
      launch("binary", binary_contiguous_kernel<T>, grid_for(n), kThreads, 0, op, n, o, pa, pb);
    } else {
      launch("binary", binary_strided_kernel<T>, grid_for(n), kThreads, 0, op, n, o, ol, pa, al, pb,
             bl);
    }
  });
}

void CudaBackend::axpby(DType dtype, int64_t n, double alpha, const void* x, double beta, void* y) {
  cuda_dispatch_float(dtype, "axpby", [&](auto tag) {
    using T = decltype(tag);
    if (n <= 0) return;
    launch("axpby", axpby_kernel<T>, grid_for(n), kThreads, 0, n, static_cast<T>(alpha),
           static_cast<const T*>(x), static_cast<T>(beta), static_cast<T*>(y), beta == 0.0);
  });
}

void CudaBackend::reduce_sum(DType dtype, const void* in, int64_t outer, int64_t reduce,
                             int64_t inner, void* out) {
  cuda_dispatch_float(dtype, "reduce_sum", [&](auto tag) {
    using T = decltype(tag);
    if (outer <= 0 || inner <= 0) return;
    const T* x = static_cast<const T*>(in);
    T* y = static_cast<T*>(out);
    if (inner == 1) {
      unsigned blocks = static_cast<unsigned>(outer < 65536 ? outer : 65536);
      launch("reduce_sum", row_sum_kernel<T>, blocks, kThreads, 0, x, outer, reduce, y);
    } else {
      int64_t col_tiles = (inner + 31) / 32;
      LETHE_CHECK(col_tiles < (int64_t{1} << 31), "reduce_sum: inner size ", inner, " too large");
      dim3 grid(static_cast<unsigned>(col_tiles),
                static_cast<unsigned>(outer < 65535 ? outer : 65535));
      launch("reduce_sum", middle_sum_kernel<T>, grid, dim3(32, 8), 0, x, outer, reduce, inner, y);
    }
  });
}

double CudaBackend::dot(DType dtype, int64_t n, const void* x, const void* y) {
  return cuda_dispatch_float(dtype, "dot", [&](auto tag) -> double {
    using T = decltype(tag);
    if (n <= 0) return 0.0;
    GramPairs pairs{};
    pairs.buf[0] = x;
    pairs.buf[1] = y;
    pairs.first[0] = 0;
    pairs.second[0] = 1;
    return gram_pairs<T>(*this, n, pairs, 1)[0];
  });
}

void CudaBackend::gram(DType dtype, int64_t n, int k, const void* const* bufs, double* out) {
  LETHE_CHECK(k >= 1 && k <= kMaxGram, "gram: k = ", k, " buffers (1..", kMaxGram, " supported)");
  cuda_dispatch_float(dtype, "gram", [&](auto tag) {
    using T = decltype(tag);
    if (n <= 0) {
      for (int i = 0; i < k * k; ++i) out[i] = 0.0;
      return;
    }
    GramPairs pairs{};
    int count = 0;
    for (int i = 0; i < k; ++i) {
      pairs.buf[i] = bufs[i];
      for (int j = i; j < k; ++j, ++count) {
        pairs.first[count] = i;
        pairs.second[count] = j;
      }
    }
    std::vector<double> sums = gram_pairs<T>(*this, n, pairs, count);
    for (int i = 0, p = 0; i < k; ++i)
      for (int j = i; j < k; ++j, ++p) out[i * k + j] = out[j * k + i] = sums[p];
  });
}

}  // namespace lethe::kernels
