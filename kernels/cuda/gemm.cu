// CUDA GEMM through cuBLAS (cublasGemmStridedBatchedEx): f32 with exact f32 compute (no TF32),
// f64, and f32 tensors multiplied as bf16 operands with f32 accumulation; bias add kernel.
#include <algorithm>
#include <climits>

#include "kernels/cuda/cuda_common.cuh"

namespace lethe::kernels {

namespace {

// C[b, i, j] = beta * C (0 when beta == 0, so poisoned/NaN memory is overwritten) for k == 0.
template <typename T>
__global__ void scale_c_kernel(T* c, int64_t batch, int64_t m, int64_t n, int64_t ldc,
                               int64_t stride_c, T beta) {
  int64_t total = batch * m * n;
  for (int64_t t = global_index(); t < total; t += global_stride()) {
    int64_t j = t % n, i = (t / n) % m, b = t / (m * n);
    T& v = c[b * stride_c + i * ldc + j];
    v = beta == T(0) ? T(0) : beta * v;
  }
}

// The epilogue: C += bias (when given), then C = max(C, 0) (when relu).
template <typename T>
__global__ void epilogue_kernel(T* c, const T* bias, bool relu, int64_t batch, int64_t m, int64_t n,
                                int64_t ldc, int64_t stride_c) {
  int64_t total = batch * m * n;
  for (int64_t t = global_index(); t < total; t += global_stride()) {
    int64_t j = t % n, i = (t / n) % m, b = t / (m * n);
    T v = c[b * stride_c + i * ldc + j];
    if (bias) v += bias[j];
    if (relu) v = v > T(0) ? v : T(0);
    c[b * stride_c + i * ldc + j] = v;
  }
}

__device__ __forceinline__ uint16_t round_bf16(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// Dense bf16 copy of `batch` f32 matrices (rows x cols, leading dim ld, batch stride).
__global__ void to_bf16_kernel(const float* src, int64_t batch, int64_t rows, int64_t cols,
                               int64_t ld, int64_t stride, uint16_t* dst) {
  int64_t total = batch * rows * cols;
  for (int64_t t = global_index(); t < total; t += global_stride()) {
    int64_t c = t % cols, r = (t / cols) % rows, b = t / (rows * cols);
    dst[t] = round_bf16(src[b * stride + r * ld + c]);
  }
}

int to_int(int64_t v, const char* what, const GemmArgs& g) {
  LETHE_CHECK(v >= 0 && v <= INT_MAX, "gemm: ", what, " = ", v,
              " exceeds cuBLAS's int range (m=", g.m, " n=", g.n, " k=", g.k, ")");
  return static_cast<int>(v);
}

}  // namespace

void CudaBackend::gemm(const GemmArgs& g) {
  LETHE_CHECK(g.m >= 0 && g.n >= 0 && g.k >= 0 && g.batch >= 0, "gemm: negative size (m=", g.m,
              " n=", g.n, " k=", g.k, " batch=", g.batch, ")");
  LETHE_CHECK(g.dtype == DType::f32 || g.dtype == DType::f64, "gemm: dtype ", dtype_name(g.dtype),
              " not supported on CUDA (f32 or f64; bf16 via GemmCompute::bf16)");
  if (g.m == 0 || g.n == 0 || g.batch == 0) return;
  const bool f64 = g.dtype == DType::f64;
  int64_t total = g.batch * g.m * g.n;

  if (g.k == 0) {
    if (f64) {
      launch("gemm (k = 0)", scale_c_kernel<double>, grid_for(total), kThreads, 0,
             static_cast<double*>(g.c), g.batch, g.m, g.n, g.ldc, g.stride_c, g.beta);
    } else {
      launch("gemm (k = 0)", scale_c_kernel<float>, grid_for(total), kThreads, 0,
             static_cast<float*>(g.c), g.batch, g.m, g.n, g.ldc, g.stride_c,
             static_cast<float>(g.beta));
    }
  } else {
    // Stored shapes of A and B in row-major (before the transposes).
    int64_t a_rows = g.trans_a ? g.k : g.m, a_cols = g.trans_a ? g.m : g.k;
    int64_t b_rows = g.trans_b ? g.n : g.k, b_cols = g.trans_b ? g.k : g.n;
    // A single-row matrix's leading dim is irrelevant, but cuBLAS validates it.
    int64_t lda = a_rows == 1 ? std::max(g.lda, a_cols) : g.lda;
    int64_t ldb = b_rows == 1 ? std::max(g.ldb, b_cols) : g.ldb;
    int64_t ldc = g.m == 1 ? std::max(g.ldc, g.n) : g.ldc;
    const void* a = g.a;
    const void* b = g.b;
    int64_t stride_a = g.stride_a, stride_b = g.stride_b;
    cudaDataType_t in_type = f64 ? CUDA_R_64F : CUDA_R_32F;
    cudaDataType_t out_type = in_type;
    cublasComputeType_t compute = f64 ? CUBLAS_COMPUTE_64F : CUBLAS_COMPUTE_32F;

    // bf16 operands: dense bf16 copies in scratch (a batch stride of 0 stays 0: one copy).
    int64_t a_batches = g.stride_a == 0 ? 1 : g.batch, b_batches = g.stride_b == 0 ? 1 : g.batch;
    const bool bf16 = !f64 && g.compute == GemmCompute::bf16;
    size_t a_bytes = bf16 ? static_cast<size_t>(a_batches * a_rows * a_cols) * 2 : 0;
    size_t b_bytes = bf16 ? static_cast<size_t>(b_batches * b_rows * b_cols) * 2 : 0;
    DeviceScratch a16(*this, a_bytes), b16(*this, b_bytes);
    if (bf16) {
      launch("gemm: A to bf16", to_bf16_kernel, grid_for(a_batches * a_rows * a_cols), kThreads, 0,
             static_cast<const float*>(g.a), a_batches, a_rows, a_cols, g.lda, g.stride_a,
             a16.as<uint16_t>());
      launch("gemm: B to bf16", to_bf16_kernel, grid_for(b_batches * b_rows * b_cols), kThreads, 0,
             static_cast<const float*>(g.b), b_batches, b_rows, b_cols, g.ldb, g.stride_b,
             b16.as<uint16_t>());
      a = a16.as<uint16_t>();
      b = b16.as<uint16_t>();
      lda = std::max<int64_t>(a_cols, 1);
      ldb = std::max<int64_t>(b_cols, 1);
      stride_a = g.stride_a == 0 ? 0 : a_rows * a_cols;
      stride_b = g.stride_b == 0 ? 0 : b_rows * b_cols;
      in_type = CUDA_R_16BF;
    }

    // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands.
    cublasOperation_t op_first = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t op_second = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    double alpha64 = g.alpha, beta64 = g.beta;
    float alpha32 = static_cast<float>(g.alpha), beta32 = static_cast<float>(g.beta);
    const void* alpha = f64 ? static_cast<const void*>(&alpha64) : &alpha32;
    const void* beta = f64 ? static_cast<const void*>(&beta64) : &beta32;
    LETHE_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        cublas_, op_first, op_second, to_int(g.n, "n", g), to_int(g.m, "m", g), to_int(g.k, "k", g),
        alpha, b, in_type, to_int(ldb, "ldb", g), stride_b, a, in_type, to_int(lda, "lda", g),
        stride_a, beta, g.c, out_type, to_int(ldc, "ldc", g), g.stride_c,
        to_int(g.batch, "batch", g), compute, CUBLAS_GEMM_DEFAULT));
  }

  if (g.bias || g.relu) {
    if (f64) {
      launch("gemm: bias/relu", epilogue_kernel<double>, grid_for(total), kThreads, 0,
             static_cast<double*>(g.c), static_cast<const double*>(g.bias), g.relu, g.batch, g.m,
             g.n, g.ldc, g.stride_c);
    } else {
      launch("gemm: bias/relu", epilogue_kernel<float>, grid_for(total), kThreads, 0,
             static_cast<float*>(g.c), static_cast<const float*>(g.bias), g.relu, g.batch, g.m, g.n,
             g.ldc, g.stride_c);
    }
  }
}

}  // namespace lethe::kernels
