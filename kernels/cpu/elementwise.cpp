// CPU elementwise maps, broadcasting binary ops, axpby, reductions, dot products and the Gram
// matrix of K flat buffers.
#include "kernels/cpu/simd.h"  // first: its pragma must precede every function

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_backend.h"

namespace lethe::kernels {

namespace {

template <typename T>
inline T unary_value(UnaryOp op, T x) {
  switch (op) {
    case UnaryOp::neg: return -x;
    case UnaryOp::relu: return x > T(0) ? x : T(0);
    case UnaryOp::gelu: return T(0.5) * x * (T(1) + std::erf(x * T(0.70710678118654752440)));
    case UnaryOp::exp: return std::exp(x);
    case UnaryOp::log: return std::log(x);
    case UnaryOp::sqrt: return std::sqrt(x);
    case UnaryOp::square: return x * x;
    case UnaryOp::tanh: return std::tanh(x);
    case UnaryOp::sigmoid: return T(1) / (T(1) + std::exp(-x));
    case UnaryOp::log_sigmoid:  // min(x, 0) - log1p(exp(-|x|)), stable for both signs
      return std::min(x, T(0)) - std::log1p(std::exp(-std::abs(x)));
    case UnaryOp::silu: return x / (T(1) + std::exp(-x));
  }
  return x;
}

// d f(x) / dx, given x and y = f(x).
template <typename T>
inline T unary_derivative(UnaryOp op, T x, T y) {
  switch (op) {
    case UnaryOp::neg: return T(-1);
    case UnaryOp::relu: return x > T(0) ? T(1) : T(0);
    case UnaryOp::gelu: {
      T cdf = T(0.5) * (T(1) + std::erf(x * T(0.70710678118654752440)));
      T pdf = std::exp(T(-0.5) * x * x) * T(0.39894228040143267794);
      return cdf + x * pdf;
    }
    case UnaryOp::exp: return y;
    case UnaryOp::log: return T(1) / x;
    case UnaryOp::sqrt: return T(0.5) / y;
    case UnaryOp::square: return T(2) * x;
    case UnaryOp::tanh: return T(1) - y * y;
    case UnaryOp::sigmoid: return y * (T(1) - y);
    case UnaryOp::log_sigmoid: return T(1) / (T(1) + std::exp(x));  // sigmoid(-x)
    case UnaryOp::silu: {  // s (1 + x (1 - s)), s = sigmoid(x)
      const T s = T(1) / (T(1) + std::exp(-x));
      return s * (T(1) + x * (T(1) - s));
    }
  }
  return T(0);
}

template <typename T>
inline T binary_value(BinaryOp op, T a, T b) {
  switch (op) {
    case BinaryOp::add: return a + b;
    case BinaryOp::sub: return a - b;
    case BinaryOp::mul: return a * b;
    case BinaryOp::div: return a / b;
  }
  return a;
}

constexpr int64_t kParallelMin = 1 << 15;

// Calls fn(std::integral_constant<UnaryOp, op>{}) so that loops see the op as a constant: the
// per-element switch folds away and loops like relu's vectorise.
template <typename Fn>
void with_unary_op(UnaryOp op, Fn&& fn) {
  using U = UnaryOp;
  switch (op) {
    case U::neg: return fn(std::integral_constant<U, U::neg>{});
    case U::relu: return fn(std::integral_constant<U, U::relu>{});
    case U::gelu: return fn(std::integral_constant<U, U::gelu>{});
    case U::exp: return fn(std::integral_constant<U, U::exp>{});
    case U::log: return fn(std::integral_constant<U, U::log>{});
    case U::sqrt: return fn(std::integral_constant<U, U::sqrt>{});
    case U::square: return fn(std::integral_constant<U, U::square>{});
    case U::tanh: return fn(std::integral_constant<U, U::tanh>{});
    case U::sigmoid: return fn(std::integral_constant<U, U::sigmoid>{});
    case U::log_sigmoid: return fn(std::integral_constant<U, U::log_sigmoid>{});
    case U::silu: return fn(std::integral_constant<U, U::silu>{});
  }
}

// Σ a[e]·b[e] over [lo, hi) in double, in 8 independent lanes (so the loop vectorises) added in
// a fixed order: the same bits whatever the thread count.
template <typename T>
double dot_range(const T* a, const T* b, int64_t lo, int64_t hi) {
  double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t e = lo;
  for (; e + 8 <= hi; e += 8)
    for (int l = 0; l < 8; ++l)
      lane[l] += static_cast<double>(a[e + l]) * static_cast<double>(b[e + l]);
  for (; e < hi; ++e) lane[0] += static_cast<double>(a[e]) * static_cast<double>(b[e]);
  return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

}  // namespace

void CpuBackend::unary(UnaryOp op, DType dtype, int64_t n, const void* x, void* y) {
  dispatch_float(dtype, "unary", [&](auto tag) {
    using T = decltype(tag);
    const T* xs = static_cast<const T*>(x);
    T* ys = static_cast<T*>(y);
    with_unary_op(op, [&](auto k) {
#pragma omp parallel for if (n > kParallelMin)
      for (int64_t i = 0; i < n; ++i) ys[i] = unary_value(k.value, xs[i]);
    });
  });
}

void CpuBackend::unary_backward(UnaryOp op, DType dtype, int64_t n, const void* x, const void* y,
                                const void* dy, void* dx) {
  dispatch_float(dtype, "unary_backward", [&](auto tag) {
    using T = decltype(tag);
    const T* xs = static_cast<const T*>(x);
    const T* ys = static_cast<const T*>(y);
    const T* dys = static_cast<const T*>(dy);
    T* dxs = static_cast<T*>(dx);
    with_unary_op(op, [&](auto k) {
      if (xs && ys) {
#pragma omp parallel for if (n > kParallelMin)
        for (int64_t i = 0; i < n; ++i) dxs[i] = dys[i] * unary_derivative(k.value, xs[i], ys[i]);
      } else if (xs) {
#pragma omp parallel for if (n > kParallelMin)
        for (int64_t i = 0; i < n; ++i) dxs[i] = dys[i] * unary_derivative(k.value, xs[i], T(0));
      } else {
#pragma omp parallel for if (n > kParallelMin)
        for (int64_t i = 0; i < n; ++i)
          dxs[i] = dys[i] * unary_derivative(k.value, T(0), ys ? ys[i] : T(0));
      }
    });
  });
}

void CpuBackend::binary(BinaryOp op, DType dtype, void* out, const Layout& ol, const void* a,
                        const Layout& al, const void* b, const Layout& bl) {
  dispatch_float(dtype, "binary", [&](auto tag) {
    using T = decltype(tag);
    T* o = static_cast<T*>(out);
    const T* pa = static_cast<const T*>(a);
    const T* pb = static_cast<const T*>(b);
    int nd = ol.ndim;
    if (nd == 0) {
      o[0] = binary_value(op, pa[0], pb[0]);
      return;
    }
    int64_t inner = ol.shape[nd - 1];
    if (inner == 0) return;
    int64_t outer = ol.numel() / inner;
    int64_t os = ol.stride[nd - 1], as = al.stride[nd - 1], bs = bl.stride[nd - 1];
#pragma omp parallel for schedule(static) if (outer * inner > kParallelMin)
    for (int64_t r = 0; r < outer; ++r) {
      int64_t rem = r, oo = 0, ao = 0, bo = 0;
      for (int d = nd - 2; d >= 0; --d) {
        int64_t i = rem % ol.shape[d];
        rem /= ol.shape[d];
        oo += i * ol.stride[d];
        ao += i * al.stride[d];
        bo += i * bl.stride[d];
      }
      T* orow = o + oo;
      const T* arow = pa + ao;
      const T* brow = pb + bo;
      if (os == 1 && as == 1 && bs == 1) {
        switch (op) {  // hoisted so the loops vectorise
          case BinaryOp::add:
            for (int64_t i = 0; i < inner; ++i) orow[i] = arow[i] + brow[i];
            break;
          case BinaryOp::sub:
            for (int64_t i = 0; i < inner; ++i) orow[i] = arow[i] - brow[i];
            break;
          case BinaryOp::mul:
            for (int64_t i = 0; i < inner; ++i) orow[i] = arow[i] * brow[i];
            break;
          case BinaryOp::div:
            for (int64_t i = 0; i < inner; ++i) orow[i] = arow[i] / brow[i];
            break;
        }
      } else {
        for (int64_t i = 0; i < inner; ++i)
          orow[i * os] = binary_value(op, arow[i * as], brow[i * bs]);
      }
    }
  });
}

void CpuBackend::axpby(DType dtype, int64_t n, double alpha, const void* x, double beta, void* y) {
  dispatch_float(dtype, "axpby", [&](auto tag) {
    using T = decltype(tag);
    const T* xs = static_cast<const T*>(x);
    T* ys = static_cast<T*>(y);
    T a = static_cast<T>(alpha), b = static_cast<T>(beta);
    if (beta == 0.0) {
#pragma omp parallel for simd if (n > kParallelMin)
      for (int64_t i = 0; i < n; ++i) ys[i] = a * xs[i];
    } else {
#pragma omp parallel for simd if (n > kParallelMin)
      for (int64_t i = 0; i < n; ++i) ys[i] = a * xs[i] + b * ys[i];
    }
  });
}

void CpuBackend::reduce_sum(DType dtype, const void* in, int64_t outer, int64_t reduce,
                            int64_t inner, void* out) {
  dispatch_float(dtype, "reduce_sum", [&](auto tag) {
    using T = decltype(tag);
    const T* x = static_cast<const T*>(in);
    T* y = static_cast<T*>(out);
    if (inner == 1) {
      // Row sums: accumulate in double for accuracy over long rows.
#pragma omp parallel for if (outer * reduce > kParallelMin)
      for (int64_t o = 0; o < outer; ++o) {
        double acc = 0;
        const T* row = x + o * reduce;
        for (int64_t r = 0; r < reduce; ++r) acc += row[r];
        y[o] = static_cast<T>(acc);
      }
      return;
    }
#pragma omp parallel for if (outer * reduce * inner > kParallelMin)
    for (int64_t o = 0; o < outer; ++o) {
      std::vector<double> acc(static_cast<size_t>(inner), 0.0);
      for (int64_t r = 0; r < reduce; ++r) {
        const T* row = x + (o * reduce + r) * inner;
        for (int64_t i = 0; i < inner; ++i) acc[i] += row[i];
      }
      for (int64_t i = 0; i < inner; ++i) y[o * inner + i] = static_cast<T>(acc[i]);
    }
  });
}

double CpuBackend::dot(DType dtype, int64_t n, const void* x, const void* y) {
  return dispatch_float(dtype, "dot", [&](auto tag) {
    using T = decltype(tag);
    const T* a = static_cast<const T*>(x);
    const T* b = static_cast<const T*>(y);
    // Partial sums over fixed chunks, added in chunk order: the same bits for any thread count.
    constexpr int64_t kChunk = 1 << 14;
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    std::vector<double> part(static_cast<size_t>(chunks), 0.0);
#pragma omp parallel for schedule(static) if (n > kParallelMin)
    for (int64_t c = 0; c < chunks; ++c)
      part[static_cast<size_t>(c)] = dot_range(a, b, c * kChunk, std::min(n, (c + 1) * kChunk));
    double acc = 0;
    for (double v : part) acc += v;
    return acc;
  });
}

void CpuBackend::gram(DType dtype, int64_t n, int k, const void* const* bufs, double* out) {
  LETHE_CHECK(k >= 1 && k <= 16, "gram: k = ", k, " buffers (1..16 supported)");
  dispatch_float(dtype, "gram", [&](auto tag) {
    using T = decltype(tag);
    const int pairs = k * (k + 1) / 2;
    // One pass over the buffers in cache-sized chunks: each chunk of every buffer is read once.
    // Each chunk's partial dot products are kept and added in chunk order, so the result does not
    // depend on the thread count (a training run reruns bit for bit).
    constexpr int64_t kChunk = 4096;
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    std::vector<double> part(static_cast<size_t>(chunks * pairs), 0.0);
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < chunks; ++c) {
      int64_t lo = c * kChunk, hi = std::min(n, lo + kChunk);
      int p = 0;
      for (int i = 0; i < k; ++i) {
        const T* a = static_cast<const T*>(bufs[i]);
        for (int j = i; j < k; ++j, ++p) {
          const T* b = static_cast<const T*>(bufs[j]);
          part[static_cast<size_t>(c * pairs + p)] = dot_range(a, b, lo, hi);
        }
      }
    }
    std::vector<double> total(static_cast<size_t>(pairs), 0.0);
    for (int64_t c = 0; c < chunks; ++c)
      for (int p = 0; p < pairs; ++p) total[p] += part[static_cast<size_t>(c * pairs + p)];
    int p = 0;
    for (int i = 0; i < k; ++i)
      for (int j = i; j < k; ++j, ++p) out[i * k + j] = out[j * k + i] = total[p];
  });
}

}  // namespace lethe::kernels
