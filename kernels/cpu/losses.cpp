// CPU embedding gather/scatter-add, fused softmax cross-entropy (nll and unlikelihood) and
// row-wise KL(softmax(ref) || softmax(x)). Softmax is never materialised: rows are re-read.
#include "kernels/cpu/simd.h"  // first: its pragma must precede every function

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_backend.h"

namespace lethe::kernels {

namespace {

constexpr int64_t kParallelMin = 1 << 14;  // elements below which loops stay serial

// Unlikelihood: log(1 − c·p_t) is floored at log(1e-30), so the loss is capped at
// −log(1e-30) ≈ 69.08. With the log-domain form below this only bites when 1 − c·p_t is truly
// tiny (c = 1 and every other logit ≥ ~69 below the target's, or V = 1). The gradient is the
// exact, unfloored one, which stays bounded (for c = 1 every |∂ℓ/∂x_j| ≤ p_t).
constexpr double kUnlikelihoodLogFloor = -69.07755278982137;  // log(1e-30)
constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// log(exp(a) + exp(b)), exact for −inf arguments.
inline double log_add_exp(double a, double b) {
  if (a == kNegInf) return b;
  if (b == kNegInf) return a;
  double hi = std::max(a, b), lo = std::min(a, b);
  return hi + std::log1p(std::exp(lo - hi));
}

// The f32 hot path of the nll loss (whole rows, no skipped entry): vectorised max, and exp-sums
// accumulated in f32 over short chunks and in f64 across chunks (so 50k-long rows lose nothing).
LETHE_SIMD_CLONES float row_max_f32(const float* x, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n; ++j) m = x[j] > m ? x[j] : m;
  return m;
}

LETHE_SIMD_CLONES double row_sum_exp_f32(const float* x, int64_t n, float m) {
  constexpr int64_t kChunk = 512;
  double total = 0;
  for (int64_t lo = 0; lo < n; lo += kChunk) {
    const int64_t hi = std::min(n, lo + kChunk);
    float s = 0;
    for (int64_t j = lo; j < hi; ++j) s += exp_f32(x[j] - m);
    total += s;
  }
  return total;
}

// dx = g · softmax(x) given the row's lse.
LETHE_SIMD_CLONES void scaled_softmax_f32(const float* x, int64_t n, float lse, float g,
                                          float* dx) {
  for (int64_t j = 0; j < n; ++j) dx[j] = g * exp_f32(x[j] - lse);
}

// log Σ_j exp(x_j) over j ≠ skip (skip < 0: all j); −inf when nothing is summed.
template <typename T>
double row_logsumexp(const T* x, int64_t vocab, int64_t skip = -1) {
  if constexpr (std::is_same_v<T, float>) {
    if (skip < 0) {
      const float m = row_max_f32(x, vocab);
      if (std::isinf(m)) return m;  // all −inf (nothing summed) or a +inf logit (degenerate)
      return static_cast<double>(m) + std::log(row_sum_exp_f32(x, vocab, m));
    }
  }
  double m = kNegInf;
  for (int64_t j = 0; j < vocab; ++j)
    if (j != skip) m = std::max(m, static_cast<double>(x[j]));
  if (m == kNegInf) return kNegInf;
  if (std::isinf(m)) return m;  // a +inf logit: the row is degenerate (nan downstream)
  double s = 0;
  for (int64_t j = 0; j < vocab; ++j)
    if (j != skip) s += std::exp(static_cast<double>(x[j]) - m);
  return m + std::log(s);
}

// The log-domain statistics of the unlikelihood term for target t:
//   lse   = log Σ_j e^{x_j},  lse_o = log Σ_{j≠t} e^{x_j},
//   log_u = log(Σ_{j≠t} e^{x_j} + (1 − c)·e^{x_t}) = lse + log(1 − c·p_t).
// Splitting the target off before summing means 1 − c·p_t never comes from a cancelling
// subtraction, even as p_t → 1.
struct UnlikelihoodStats {
  double lse = 0, lse_o = 0, log_u = 0;
};

template <typename T>
UnlikelihoodStats unlikelihood_stats(const T* x, int64_t vocab, int64_t t, double c) {
  UnlikelihoodStats s;
  const double xt = static_cast<double>(x[t]);
  s.lse_o = row_logsumexp(x, vocab, t);
  s.lse = log_add_exp(s.lse_o, xt);
  s.log_u = c >= 1.0 ? s.lse_o : log_add_exp(s.lse_o, std::log1p(-c) + xt);
  return s;
}

void check_targets(const char* what, const CrossEntropyArgs& a) {
  for (int64_t r = 0; r < a.rows; ++r) {
    int64_t t = a.targets[r];
    LETHE_CHECK(t == a.ignore_index || (t >= 0 && t < a.vocab), what, ": target ", t, " at row ", r,
                " is outside [0, ", a.vocab, ") and is not ignore_index ", a.ignore_index);
  }
}

template <typename T>
void ce_forward(const CrossEntropyArgs& a) {
  const T* logits = static_cast<const T*>(a.logits);
  T* loss = static_cast<T*>(a.loss);
  const int64_t V = a.vocab;
#pragma omp parallel for schedule(static) if (a.rows * V > kParallelMin)
  for (int64_t r = 0; r < a.rows; ++r) {
    const T* x = logits + r * V;
    const int64_t t = a.targets[r];
    const bool valid = t != a.ignore_index;
    double lse, base = 0;
    if (valid && a.mode == CrossEntropyMode::unlikelihood) {
      // −log(1 − c·p_t) = lse − log_u, floored (kUnlikelihoodLogFloor).
      UnlikelihoodStats s = unlikelihood_stats(x, V, t, a.c);
      lse = s.lse;
      base = -std::max(s.log_u - s.lse, kUnlikelihoodLogFloor);
    } else {
      lse = row_logsumexp(x, V);
      if (valid) base = lse - static_cast<double>(x[t]);
    }
    if (a.lse) a.lse[r] = static_cast<float>(lse);
    const double w = a.weights ? static_cast<double>(a.weights[r]) : 1.0;
    loss[r] = valid ? static_cast<T>(w * base) : T(0);
  }
}

template <typename T>
void ce_backward(const CrossEntropyBackwardArgs& b) {
  const CrossEntropyArgs& a = b.fwd;
  const T* logits = static_cast<const T*>(a.logits);
  const T* dloss = static_cast<const T*>(b.dloss);
  T* dlogits = static_cast<T*>(b.dlogits);
  const int64_t V = a.vocab;
  // The saved f32 lse is as exact as f32 logits for the nll mode; f64 (gradient checks) and the
  // unlikelihood mode (which needs the target split off) recompute the row statistics first.
  const bool use_saved = std::is_same_v<T, float> && a.lse && a.mode == CrossEntropyMode::nll;
#pragma omp parallel for schedule(static) if (a.rows * V > kParallelMin)
  for (int64_t r = 0; r < a.rows; ++r) {
    const T* x = logits + r * V;
    T* dx = dlogits + r * V;
    const int64_t t = a.targets[r];
    if (t == a.ignore_index) {
      std::fill(dx, dx + V, T(0));
      continue;
    }
    const double g =
        static_cast<double>(dloss[r]) * (a.weights ? static_cast<double>(a.weights[r]) : 1.0);
    if (a.mode == CrossEntropyMode::nll) {
      const double lse = use_saved ? static_cast<double>(a.lse[r]) : row_logsumexp(x, V);
      if constexpr (std::is_same_v<T, float>) {  // g · (softmax − onehot)
        scaled_softmax_f32(x, V, static_cast<float>(lse), static_cast<float>(g), dx);
      } else {
        for (int64_t j = 0; j < V; ++j)
          dx[j] = static_cast<T>(g * std::exp(static_cast<double>(x[j]) - lse));
      }
      dx[t] = static_cast<T>(static_cast<double>(dx[t]) - g);
    } else {
      // ∂/∂x_j −log(1 − c·p_t) = c·p_t·(δ_jt − p_j)/(1 − c·p_t); with u = e^{log_u}:
      //   j ≠ t: −c·p_t·e^{x_j − log_u},   j = t: c·p_t·e^{lse_o − log_u}.
      // Every exponent is ≤ 0 (log_u ≥ lse_o ≥ x_j), so nothing overflows. log_u = −inf only
      // when V = 1 and c = 1: p_t ≡ 1, the loss is constant and the gradient 0.
      UnlikelihoodStats s = unlikelihood_stats(x, V, t, a.c);
      const double p_t = std::exp(static_cast<double>(x[t]) - s.lse);
      const double k = g * a.c * p_t;
      if (s.log_u == kNegInf) {
        std::fill(dx, dx + V, T(0));
        continue;
      }
      for (int64_t j = 0; j < V; ++j)
        dx[j] = static_cast<T>(-k * std::exp(static_cast<double>(x[j]) - s.log_u));
      dx[t] = static_cast<T>(s.lse_o == kNegInf ? 0.0 : k * std::exp(s.lse_o - s.log_u));
    }
  }
}

// Log-sum-exp of a whole row.
template <typename T>
double row_lse(const T* x, int64_t vocab) {
  return row_logsumexp(x, vocab);
}

// KL(softmax(ref) || softmax(x)) of one row given both lse values: Σ p_ref·(log p_ref − log p).
template <typename T>
double row_kl(const T* ref, const T* x, int64_t vocab, double lse_r, double lse_x) {
  double kl = 0;
  for (int64_t j = 0; j < vocab; ++j) {
    double lr = static_cast<double>(ref[j]) - lse_r;
    double pr = std::exp(lr);
    if (pr == 0) continue;  // also skips −inf reference logits (0·inf)
    kl += pr * (lr - (static_cast<double>(x[j]) - lse_x));
  }
  return kl;
}

template <typename T>
void kl_forward(int64_t rows, int64_t vocab, const void* ref_logits, const void* logits,
                void* out) {
  const T* R = static_cast<const T*>(ref_logits);
  const T* X = static_cast<const T*>(logits);
  T* o = static_cast<T*>(out);
#pragma omp parallel for schedule(static) if (rows * vocab > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const T* ref = R + r * vocab;
    const T* x = X + r * vocab;
    o[r] = static_cast<T>(row_kl(ref, x, vocab, row_lse(ref, vocab), row_lse(x, vocab)));
  }
}

template <typename T>
void kl_backward(int64_t rows, int64_t vocab, const void* ref_logits, const void* logits,
                 const void* dout, void* dlogits, void* dref) {
  const T* R = static_cast<const T*>(ref_logits);
  const T* X = static_cast<const T*>(logits);
  const T* g = static_cast<const T*>(dout);
  T* dX = static_cast<T*>(dlogits);
  T* dR = static_cast<T*>(dref);
#pragma omp parallel for schedule(static) if (rows * vocab > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const T* ref = R + r * vocab;
    const T* x = X + r * vocab;
    double lse_r = row_lse(ref, vocab), lse_x = row_lse(x, vocab);
    double gr = static_cast<double>(g[r]);
    double kl = dR ? row_kl(ref, x, vocab, lse_r, lse_x) : 0.0;
    for (int64_t j = 0; j < vocab; ++j) {
      double lr = static_cast<double>(ref[j]) - lse_r;
      double lx = static_cast<double>(x[j]) - lse_x;
      double pr = std::exp(lr);
      if (dX) dX[r * vocab + j] = static_cast<T>(gr * (std::exp(lx) - pr));
      if (dR) dR[r * vocab + j] = static_cast<T>(pr == 0 ? 0.0 : gr * pr * (lr - lx - kl));
    }
  }
}

}  // namespace

void CpuBackend::embedding_forward(DType dtype, int64_t n, int64_t dim, const int64_t* ids,
                                   const void* table, void* out) {
  const size_t row_bytes = static_cast<size_t>(dim) * dtype_size(dtype);
  const char* src = static_cast<const char*>(table);
  char* dst = static_cast<char*>(out);
  for (int64_t i = 0; i < n; ++i)
    LETHE_CHECK(ids[i] >= 0, "embedding_forward: negative id ", ids[i], " at ", i);
#pragma omp parallel for schedule(static) if (n * dim > kParallelMin)
  for (int64_t i = 0; i < n; ++i)
    std::memcpy(dst + static_cast<size_t>(i) * row_bytes,
                src + static_cast<size_t>(ids[i]) * row_bytes, row_bytes);
}

void CpuBackend::embedding_backward(DType dtype, int64_t n, int64_t dim, const int64_t* ids,
                                    const void* dout, void* dtable, int64_t padding_idx) {
  dispatch_float(dtype, "embedding_backward", [&](auto tag) {
    using T = decltype(tag);
    const T* g = static_cast<const T*>(dout);
    T* d = static_cast<T*>(dtable);
    // Threads own disjoint column blocks, so repeated ids never race.
    constexpr int64_t kBlock = 64;
    const int64_t blocks = (dim + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (n * dim > kParallelMin)
    for (int64_t bk = 0; bk < blocks; ++bk) {
      const int64_t lo = bk * kBlock, hi = std::min(dim, lo + kBlock);
      for (int64_t i = 0; i < n; ++i) {
        if (ids[i] == padding_idx) continue;
        T* row = d + ids[i] * dim;
        const T* gi = g + i * dim;
        for (int64_t e = lo; e < hi; ++e) row[e] += gi[e];
      }
    }
  });
}

void CpuBackend::cross_entropy_forward(const CrossEntropyArgs& args) {
  LETHE_CHECK(args.vocab > 0 || args.rows == 0, "cross_entropy_forward: vocab is 0");
  check_targets("cross_entropy_forward", args);
  dispatch_float(args.dtype, "cross_entropy_forward",
                 [&](auto tag) { ce_forward<decltype(tag)>(args); });
}

void CpuBackend::cross_entropy_backward(const CrossEntropyBackwardArgs& args) {
  check_targets("cross_entropy_backward", args.fwd);
  dispatch_float(args.fwd.dtype, "cross_entropy_backward",
                 [&](auto tag) { ce_backward<decltype(tag)>(args); });
}

void CpuBackend::kl_div_forward(DType dtype, int64_t rows, int64_t vocab, const void* ref_logits,
                                const void* logits, void* out) {
  LETHE_CHECK(vocab > 0 || rows == 0, "kl_div_forward: vocab is 0");
  dispatch_float(dtype, "kl_div_forward", [&](auto tag) {
    kl_forward<decltype(tag)>(rows, vocab, ref_logits, logits, out);
  });
}

void CpuBackend::kl_div_backward(DType dtype, int64_t rows, int64_t vocab, const void* ref_logits,
                                 const void* logits, const void* dout, void* dlogits, void* dref) {
  dispatch_float(dtype, "kl_div_backward", [&](auto tag) {
    kl_backward<decltype(tag)>(rows, vocab, ref_logits, logits, dout, dlogits, dref);
  });
}

}  // namespace lethe::kernels
