// CUDA optimizer steps over flat f32 buffers (one kernel per step for all parameters): PyTorch's
// AdamW and SGD (momentum, dampening, Nesterov, weight decay).
#include <cmath>

#include "kernels/cuda/cuda_common.cuh"

namespace lethe::kernels {

namespace {

// The CPU backend's arithmetic (torch's: scalars rounded to f32 first, lerp for the first
// moment) with explicit rounding steps, so no FMA contraction: results are bit-identical.
struct AdamScalars {
  float decay_factor, w1, one_minus_w1, b2, one_minus_b2, bc2_sqrt, eps, neg_step_size;
  bool decay, small_weight;
};

__global__ void adamw_kernel(int64_t n, float* param, const float* grad, float* m, float* v,
                             AdamScalars s) {
  for (int64_t i = global_index(); i < n; i += global_stride()) {
    float p = param[i];
    if (s.decay) p = __fmul_rn(p, s.decay_factor);
    const float g = grad[i], mi = m[i];
    const float m_new = s.small_weight ? __fadd_rn(mi, __fmul_rn(s.w1, __fsub_rn(g, mi)))
                                       : __fsub_rn(g, __fmul_rn(__fsub_rn(g, mi), s.one_minus_w1));
    const float v_new =
        __fadd_rn(__fmul_rn(v[i], s.b2), __fmul_rn(s.one_minus_b2, __fmul_rn(g, g)));
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v_new), s.bc2_sqrt), s.eps);
    param[i] = __fadd_rn(p, __fmul_rn(s.neg_step_size, __fdiv_rn(m_new, denom)));
    m[i] = m_new;
    v[i] = v_new;
  }
}

__global__ void sgd_kernel(int64_t n, float* param, const float* grad, float* buf, float wd,
                           float mom, float one_minus_damp, float neg_lr, bool decay,
                           bool use_momentum, bool nesterov, bool first_step) {
  for (int64_t i = global_index(); i < n; i += global_stride()) {
    float g = grad[i];
    if (decay) g = __fadd_rn(g, __fmul_rn(wd, param[i]));
    float d = g;
    if (use_momentum) {
      const float b =
          first_step ? g : __fadd_rn(__fmul_rn(buf[i], mom), __fmul_rn(one_minus_damp, g));
      buf[i] = b;
      d = nesterov ? __fadd_rn(g, __fmul_rn(mom, b)) : b;
    }
    param[i] = __fadd_rn(param[i], __fmul_rn(neg_lr, d));
  }
}

}  // namespace

void CudaBackend::adamw_step(int64_t n, float* param, const float* grad, float* m, float* v,
                             double lr, double beta1, double beta2, double eps, double weight_decay,
                             double bias_correction1, double bias_correction2) {
  LETHE_CHECK(n >= 0, "adamw_step: negative size ", n);
  LETHE_CHECK(bias_correction1 > 0 && bias_correction2 > 0,
              "adamw_step: bias corrections must be positive (got ", bias_correction1, ", ",
              bias_correction2, ")");
  if (n == 0) return;
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
  s.decay = weight_decay != 0.0;
  s.small_weight = std::abs(w1) < 0.5;
  launch("adamw_step", adamw_kernel, grid_for(n), kThreads, 0, n, param, grad, m, v, s);
}

void CudaBackend::sgd_step(int64_t n, float* param, const float* grad, float* momentum_buf,
                           double lr, double momentum, double dampening, double weight_decay,
                           bool nesterov, bool first_step) {
  LETHE_CHECK(n >= 0, "sgd_step: negative size ", n);
  const bool use_momentum = momentum != 0.0;
  LETHE_CHECK(!use_momentum || momentum_buf != nullptr, "sgd_step: momentum ", momentum,
              " needs a momentum buffer");
  if (n == 0) return;
  launch("sgd_step", sgd_kernel, grid_for(n), kThreads, 0, n, param, grad, momentum_buf,
         static_cast<float>(weight_decay), static_cast<float>(momentum),
         static_cast<float>(1.0 - dampening), static_cast<float>(-lr), weight_decay != 0.0,
         use_momentum, nesterov, first_step);
}

}  // namespace lethe::kernels
