// The one place the engine fills kernels::GemmArgs: shapes, leading dimensions, transposes, batch
// strides, alpha/beta, bias and the matmul precision, read from tensors. Internal to engine/ops.
#pragma once

#include "engine/device_backend.h"
#include "engine/tensor.h"

namespace lethe::ops_detail {

// A GEMM operand: `stored` is a row-major matrix [rows, cols], or a batch [batch, rows, cols] of
// them, whose rows lie cols elements apart and whose matrices lie rows · cols elements apart
// (only the first element's place is read from the tensor, so a strided view must not be
// passed); the product uses it as it is or, when `transposed`, its transpose.
struct GemmOperand {
  Tensor stored;
  bool transposed = false;
};

// The arguments of c = alpha · op(a) op(b) + beta · c, then + bias [n] on every row and max(·, 0)
// when relu: c is [m, n] or [batch, m, n] stored as a GemmOperand is, op(a) is [m, k] and op(b)
// [k, n], with the batch taken from c. f32 products take bf16 operands in bf16 matmul precision.
// The args point into the tensors' storage, which must outlive the GEMM.
kernels::GemmArgs gemm_args(const Tensor& c, const GemmOperand& a, const GemmOperand& b,
                            double alpha = 1.0, double beta = 0.0, const Tensor& bias = Tensor(),
                            bool relu = false);

}  // namespace lethe::ops_detail
