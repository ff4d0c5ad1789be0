// See gemm_args.h.
#include "engine/ops/gemm_args.h"

#include "engine/ops.h"

namespace lethe::ops_detail {

namespace {

int64_t rows_of(const Tensor& t) {
  return t.size(t.dim() - 2);
}
int64_t cols_of(const Tensor& t) {
  return t.size(t.dim() - 1);
}
// Elements between consecutive matrices of a batch; 0 for a single matrix.
int64_t matrix_stride(const Tensor& t) {
  return t.dim() == 3 ? rows_of(t) * cols_of(t) : 0;
}

}  // namespace

kernels::GemmArgs gemm_args(const Tensor& c, const GemmOperand& a, const GemmOperand& b,
                            double alpha, double beta, const Tensor& bias, bool relu) {
  kernels::GemmArgs g;
  g.dtype = a.stored.dtype();
  g.compute = g.dtype == DType::f32 && matmul_precision() == MatmulPrecision::bf16
                  ? kernels::GemmCompute::bf16
                  : kernels::GemmCompute::native;
  g.trans_a = a.transposed;
  g.trans_b = b.transposed;
  g.m = a.transposed ? cols_of(a.stored) : rows_of(a.stored);
  g.k = a.transposed ? rows_of(a.stored) : cols_of(a.stored);
  g.n = b.transposed ? rows_of(b.stored) : cols_of(b.stored);
  g.a = a.stored.data_ptr();
  g.lda = cols_of(a.stored);
  g.b = b.stored.data_ptr();
  g.ldb = cols_of(b.stored);
  g.c = c.data_ptr();
  g.ldc = cols_of(c);
  g.alpha = alpha;
  g.beta = beta;
  g.batch = c.dim() == 3 ? c.size(0) : 1;
  g.stride_a = matrix_stride(a.stored);
  g.stride_b = matrix_stride(b.stored);
  g.stride_c = matrix_stride(c);
  g.bias = bias.defined() ? bias.data_ptr() : nullptr;
  g.relu = relu;
  return g;
}

}  // namespace lethe::ops_detail
