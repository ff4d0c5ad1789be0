// The CPU backend: reference implementations of every primitive in kernels/backend.h
// (oneDNN GEMM, OpenMP loops). Internal header; users go through kernels/backend.h.
#pragma once

#include <cmath>
#include <type_traits>

#include "kernels/backend.h"
#include "kernels/error.h"

namespace lethe::kernels {

// Calls fn(T{}) with T = float or double for a float dtype; throws for anything else.
template <typename Fn>
auto dispatch_float(DType dtype, const char* what, Fn&& fn) {
  switch (dtype) {
    case DType::f32: return fn(float{});
    case DType::f64: return fn(double{});
    default:
      LETHE_FAIL(what, ": dtype ", dtype_name(dtype), " not supported on the CPU (use f32 or f64)");
  }
}

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }
  void* allocate(size_t bytes) override;
  void deallocate(void* ptr, size_t bytes) override;
  void copy_to_host(void* host_dst, const void* dev_src, size_t bytes) override;
  void copy_from_host(void* dev_dst, const void* host_src, size_t bytes) override;
  void copy_on_device(void* dst, const void* src, size_t bytes) override;
  void synchronize() override {}

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
};

}  // namespace lethe::kernels
