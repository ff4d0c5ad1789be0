// CPU optimizer steps over flat f32 buffers: AdamW and SGD with torch.optim's arithmetic.
// Each update is one pass; scalars derived from the step count arrive from the host as doubles.
#include <algorithm>
#include <cmath>
#include <type_traits>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "kernels/cpu/cpu_backend.h"

namespace lethe::kernels {

namespace {

constexpr int64_t kOptimParallelMin = 1 << 14;

struct AdamScalars {
  float decay_factor, w1, one_minus_w1, b2, one_minus_b2, bc2_sqrt, eps, neg_step_size;
};

// The branches on weight decay, the lerp form, momentum and nesterov are template parameters so
// the loop bodies are straight-line code.

// One element of AdamW: the scalar form of the SIMD body below (same operations, same order, so
// both give bit-identical results).
template <bool kDecay, bool kSmallWeight>
inline void adamw_element(float& param, float g, float& m, float& v, const AdamScalars& s) {
  float p = param;
  if constexpr (kDecay) p = p * s.decay_factor;
  // torch's lerp: self + w (end - self) for small w, else end - (end - self)(1 - w).
  const float m_new = kSmallWeight ? m + s.w1 * (g - m) : g - (g - m) * s.one_minus_w1;
  const float v_new = v * s.b2 + s.one_minus_b2 * (g * g);
  const float denom = std::sqrt(v_new) / s.bc2_sqrt + s.eps;
  param = p + s.neg_step_size * (m_new / denom);
  m = m_new;
  v = v_new;
}

// One thread's range [lo, hi). Written with SSE intrinsics because std::sqrt's errno handling
// keeps GCC from vectorising the loop (the build does not pass -fno-math-errno).
template <bool kDecay, bool kSmallWeight>
void adamw_range(int64_t lo, int64_t hi, float* param, const float* grad, float* m, float* v,
                 const AdamScalars s) {
  int64_t i = lo;
#if defined(__SSE2__)
  const __m128 decay_factor = _mm_set1_ps(s.decay_factor), w1 = _mm_set1_ps(s.w1);
  const __m128 one_minus_w1 = _mm_set1_ps(s.one_minus_w1), b2 = _mm_set1_ps(s.b2);
  const __m128 one_minus_b2 = _mm_set1_ps(s.one_minus_b2), bc2_sqrt = _mm_set1_ps(s.bc2_sqrt);
  const __m128 eps = _mm_set1_ps(s.eps), neg_step_size = _mm_set1_ps(s.neg_step_size);
  for (; i + 4 <= hi; i += 4) {
    __m128 p = _mm_loadu_ps(param + i);
    if constexpr (kDecay) p = _mm_mul_ps(p, decay_factor);
    const __m128 g = _mm_loadu_ps(grad + i);
    const __m128 mi = _mm_loadu_ps(m + i);
    __m128 m_new;
    if constexpr (kSmallWeight) {
      m_new = _mm_add_ps(mi, _mm_mul_ps(w1, _mm_sub_ps(g, mi)));
    } else {
      m_new = _mm_sub_ps(g, _mm_mul_ps(_mm_sub_ps(g, mi), one_minus_w1));
    }
    const __m128 v_new =
        _mm_add_ps(_mm_mul_ps(_mm_loadu_ps(v + i), b2), _mm_mul_ps(one_minus_b2, _mm_mul_ps(g, g)));
    const __m128 denom = _mm_add_ps(_mm_div_ps(_mm_sqrt_ps(v_new), bc2_sqrt), eps);
    _mm_storeu_ps(param + i, _mm_add_ps(p, _mm_mul_ps(neg_step_size, _mm_div_ps(m_new, denom))));
    _mm_storeu_ps(m + i, m_new);
    _mm_storeu_ps(v + i, v_new);
  }
#endif
  for (; i < hi; ++i) adamw_element<kDecay, kSmallWeight>(param[i], grad[i], m[i], v[i], s);
}

template <bool kDecay, bool kSmallWeight>
void adamw_loop(int64_t n, float* param, const float* grad, float* m, float* v,
                const AdamScalars& s) {
  constexpr int64_t kBlock = 1 << 12;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (n > kOptimParallelMin)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t lo = blk * kBlock, hi = std::min(n, lo + kBlock);
    adamw_range<kDecay, kSmallWeight>(lo, hi, param, grad, m, v, s);
  }
}

template <bool kDecay, bool kMomentum, bool kNesterov>
void sgd_loop(int64_t n, float* param, const float* grad, float* buf, float wd, float mom,
              float one_minus_damp, float neg_lr, bool first_step) {
#pragma omp parallel for simd if (n > kOptimParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    float g = grad[i];
    if constexpr (kDecay) g = g + wd * param[i];
    float d = g;
    if constexpr (kMomentum) {
      const float b = first_step ? g : buf[i] * mom + one_minus_damp * g;
      buf[i] = b;
      d = kNesterov ? g + mom * b : b;
    }
    param[i] = param[i] + neg_lr * d;
  }
}

}  // namespace

// Mirrors torch.optim's single-tensor AdamW on f32 tensors: every tensor op there rounds to f32
// with its Python-float scalar first cast to f32, so the same casts happen here. The first moment
// uses lerp, as torch's exp_avg.lerp_(grad, 1 - beta1) does.
void CpuBackend::adamw_step(int64_t n, float* param, const float* grad, float* m, float* v,
                            double lr, double beta1, double beta2, double eps, double weight_decay,
                            double bias_correction1, double bias_correction2) {
  LETHE_CHECK(n >= 0, "adamw_step: negative size ", n);
  LETHE_CHECK(bias_correction1 > 0 && bias_correction2 > 0,
              "adamw_step: bias corrections must be positive (got ", bias_correction1, ", ",
              bias_correction2, ")");
  const double w1 = 1.0 - beta1;
  AdamScalars s;
  s.decay_factor = static_cast<float>(1.0 - lr * weight_decay);
  s.w1 = static_cast<float>(w1);
  s.one_minus_w1 = static_cast<float>(1.0 - w1);
  s.b2 = static_cast<float>(beta2);
  s.one_minus_b2 = static_cast<float>(1.0 - beta2);
  s.bc2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
  s.eps = static_cast<float>(eps);
  s.neg_step_size = static_cast<float>(-(lr / bias_correction1));
  const bool decay = weight_decay != 0.0, small = std::abs(w1) < 0.5;
  if (decay && small) adamw_loop<true, true>(n, param, grad, m, v, s);
  if (decay && !small) adamw_loop<true, false>(n, param, grad, m, v, s);
  if (!decay && small) adamw_loop<false, true>(n, param, grad, m, v, s);
  if (!decay && !small) adamw_loop<false, false>(n, param, grad, m, v, s);
}

// Mirrors torch.optim's single-tensor SGD: g += wd p; buf = g on the first step, else
// buf = momentum buf + (1 - dampening) g; g = nesterov ? g + momentum buf : buf; p -= lr g.
void CpuBackend::sgd_step(int64_t n, float* param, const float* grad, float* momentum_buf,
                          double lr, double momentum, double dampening, double weight_decay,
                          bool nesterov, bool first_step) {
  LETHE_CHECK(n >= 0, "sgd_step: negative size ", n);
  const bool use_momentum = momentum != 0.0, decay = weight_decay != 0.0;
  LETHE_CHECK(!use_momentum || momentum_buf != nullptr, "sgd_step: momentum ", momentum,
              " needs a momentum buffer");
  const float wd = static_cast<float>(weight_decay), mom = static_cast<float>(momentum);
  const float one_minus_damp = static_cast<float>(1.0 - dampening);
  const float neg_lr = static_cast<float>(-lr);
  auto run = [&](auto decay_tag, auto momentum_tag, auto nesterov_tag) {
    sgd_loop<decltype(decay_tag)::value, decltype(momentum_tag)::value,
             decltype(nesterov_tag)::value>(n, param, grad, momentum_buf, wd, mom, one_minus_damp,
                                            neg_lr, first_step);
  };
  using T = std::true_type;
  using F = std::false_type;
  if (!use_momentum) {
    decay ? run(T{}, F{}, F{}) : run(F{}, F{}, F{});
  } else if (nesterov) {
    decay ? run(T{}, T{}, T{}) : run(F{}, T{}, T{});
  } else {
    decay ? run(T{}, T{}, F{}) : run(F{}, T{}, F{});
  }
}

}  // namespace lethe::kernels
