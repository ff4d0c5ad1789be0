// The CUDA emulator's cuBLAS: the entry points lethe's CUDA backend calls, with cuBLAS's
// documented semantics — column-major operands, transposes, leading dimensions, batch strides
// (0 broadcasts), alpha/beta on the host, beta = 0 never reading C, f32 accumulation for
// CUBLAS_COMPUTE_32F over f32, bf16 or f16 operands, f64 for CUBLAS_COMPUTE_64F, TF32 rounding
// only when the handle's math mode allows it. A reference, not a fast GEMM: lethe's own operand
// swapping and strides are what it tests. Every operand's whole extent must lie inside one
// cudaMalloc block (on a GPU a wrong stride reads someone else's memory; here it fails).
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "kernels/cuda/emu/cuda_emu.h"

struct cublasContext {
  cudaStream_t stream = nullptr;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
};

namespace {

bool transposed(cublasOperation_t op) {
  return op == CUBLAS_OP_T || op == CUBLAS_OP_C;
}

float load_f32(cudaDataType t, const void* p, size_t i, bool tf32) {
  float v = 0;
  switch (t) {
    case CUDA_R_32F: v = static_cast<const float*>(p)[i]; break;
    case CUDA_R_16BF: v = __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]); break;
    case CUDA_R_16F: v = __half2float(static_cast<const __half*>(p)[i]); break;
    default: break;
  }
  if (tf32 && t == CUDA_R_32F && std::isfinite(v)) {  // round the mantissa to 10 bits (nearest)
    uint32_t u;
    std::memcpy(&u, &v, 4);
    u = (u + 0xfffu + ((u >> 13) & 1u)) & ~0x1fffu;
    std::memcpy(&v, &u, 4);
  }
  return v;
}

size_t type_bytes(cudaDataType t) {
  switch (t) {
    case CUDA_R_64F: return 8;
    case CUDA_R_32F: return 4;
    case CUDA_R_16BF:
    case CUDA_R_16F: return 2;
    default: return 0;
  }
}

bool supported(cudaDataType a, cudaDataType b, cudaDataType c, cublasComputeType_t compute) {
  if (a != b) return false;
  if (compute == CUBLAS_COMPUTE_64F || compute == CUBLAS_COMPUTE_64F_PEDANTIC)
    return a == CUDA_R_64F && c == CUDA_R_64F;
  if (compute == CUBLAS_COMPUTE_32F || compute == CUBLAS_COMPUTE_32F_PEDANTIC ||
      compute == CUBLAS_COMPUTE_32F_FAST_TF32)
    return (a == CUDA_R_32F && c == CUDA_R_32F) ||
           ((a == CUDA_R_16BF || a == CUDA_R_16F) && (c == a || c == CUDA_R_32F));
  return false;
}

// Whether a matrix of rows x cols (column-major, leading dim ld) repeated `batch` times at
// `stride` elements lies inside one allocation.
bool extent_ok(const void* p, cudaDataType t, int rows, int cols, int ld, long long stride,
               int batch) {
  if (rows == 0 || cols == 0 || batch == 0) return true;
  long long last = static_cast<long long>(cols - 1) * ld + rows;  // elements
  long long lo = 0, hi = last;
  if (batch > 1) {
    long long span = static_cast<long long>(batch - 1) * stride;
    if (span < 0)
      lo = span;
    else
      hi += span;
  }
  const char* base = static_cast<const char*>(p) + lo * static_cast<long long>(type_bytes(t));
  return lethe::emu::inside_allocation(base, static_cast<size_t>(hi - lo) * type_bytes(t));
}

cublasStatus_t report(cublasStatus_t st, const std::string& why) {
  std::fprintf(stderr, "lethe CUDA emulator: cublasGemmStridedBatchedEx: %s\n", why.c_str());
  return st;
}

}  // namespace

extern "C" {

cublasStatus_t CUBLASWINAPI cublasCreate_v2(cublasHandle_t* handle) {
  if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
  *handle = new cublasContext();
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t CUBLASWINAPI cublasDestroy_v2(cublasHandle_t handle) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t CUBLASWINAPI cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t CUBLASWINAPI cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t CUBLASWINAPI cublasGetMathMode(cublasHandle_t handle, cublasMath_t* mode) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!mode) return CUBLAS_STATUS_INVALID_VALUE;
  *mode = handle->math;
  return CUBLAS_STATUS_SUCCESS;
}

const char* CUBLASWINAPI cublasGetStatusName(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}
const char* CUBLASWINAPI cublasGetStatusString(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
    default: return "an error (see the lethe CUDA emulator's message on stderr)";
  }
}

cublasStatus_t CUBLASWINAPI cublasGemmStridedBatchedEx(
    cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k,
    const void* alpha, const void* A, cudaDataType Atype, int lda, long long int strideA,
    const void* B, cudaDataType Btype, int ldb, long long int strideB, const void* beta, void* C,
    cudaDataType Ctype, int ldc, long long int strideC, int batchCount,
    cublasComputeType_t computeType, cublasGemmAlgo_t) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  const bool ta = transposed(transa), tb = transposed(transb);
  const int a_rows = ta ? k : m, a_cols = ta ? m : k;
  const int b_rows = tb ? n : k, b_cols = tb ? k : n;
  if (m < 0 || n < 0 || k < 0 || batchCount < 0)
    return report(CUBLAS_STATUS_INVALID_VALUE, "negative m, n, k or batchCount");
  if (lda < std::max(1, a_rows) || ldb < std::max(1, b_rows) || ldc < std::max(1, m))
    return report(CUBLAS_STATUS_INVALID_VALUE,
                  "a leading dimension below its matrix's rows (lda " + std::to_string(lda) +
                      " for " + std::to_string(a_rows) + ", ldb " + std::to_string(ldb) + " for " +
                      std::to_string(b_rows) + ", ldc " + std::to_string(ldc) + " for " +
                      std::to_string(m) + ")");
  if (!alpha || !beta) return report(CUBLAS_STATUS_INVALID_VALUE, "null alpha or beta");
  if (!supported(Atype, Btype, Ctype, computeType))
    return report(CUBLAS_STATUS_NOT_SUPPORTED, "this combination of operand and compute types");
  if (m == 0 || n == 0 || batchCount == 0) return CUBLAS_STATUS_SUCCESS;
  const bool f64 = computeType == CUBLAS_COMPUTE_64F || computeType == CUBLAS_COMPUTE_64F_PEDANTIC;
  const double al = f64 ? *static_cast<const double*>(alpha) : *static_cast<const float*>(alpha);
  const double be = f64 ? *static_cast<const double*>(beta) : *static_cast<const float*>(beta);
  if (k > 0 && (!extent_ok(A, Atype, a_rows, a_cols, lda, strideA, batchCount) ||
                !extent_ok(B, Btype, b_rows, b_cols, ldb, strideB, batchCount)))
    return report(CUBLAS_STATUS_EXECUTION_FAILED,
                  "A or B (with its leading dimension and batch stride) reaches outside its "
                  "cudaMalloc block");
  if (!extent_ok(C, Ctype, m, n, ldc, strideC, batchCount))
    return report(CUBLAS_STATUS_EXECUTION_FAILED,
                  "C (with ldc and its batch stride) reaches outside its cudaMalloc block");
  const bool tf32 =
      computeType == CUBLAS_COMPUTE_32F_FAST_TF32 ||
      (computeType == CUBLAS_COMPUTE_32F && handle->math == CUBLAS_TF32_TENSOR_OP_MATH);
  const size_t ab = type_bytes(Atype), cb = type_bytes(Ctype);
  for (int p = 0; p < batchCount; ++p) {
    const char* a = static_cast<const char*>(A) + static_cast<long long>(p) * strideA * ab;
    const char* b = static_cast<const char*>(B) + static_cast<long long>(p) * strideB * ab;
    char* c = static_cast<char*>(C) + static_cast<long long>(p) * strideC * cb;
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        const size_t ci = static_cast<size_t>(i) + static_cast<size_t>(j) * ldc;
        // op(A)(i, l) and op(B)(l, j) in column-major storage
        auto a_at = [&](int l) {
          return ta ? static_cast<size_t>(l) + static_cast<size_t>(i) * lda
                    : static_cast<size_t>(i) + static_cast<size_t>(l) * lda;
        };
        auto b_at = [&](int l) {
          return tb ? static_cast<size_t>(j) + static_cast<size_t>(l) * ldb
                    : static_cast<size_t>(l) + static_cast<size_t>(j) * ldb;
        };
        if (f64) {
          const double* ad = reinterpret_cast<const double*>(a);
          const double* bd = reinterpret_cast<const double*>(b);
          double acc = 0;
          for (int l = 0; l < k; ++l) acc += ad[a_at(l)] * bd[b_at(l)];
          double* cd = reinterpret_cast<double*>(c);
          cd[ci] = be == 0.0 ? al * acc : al * acc + be * cd[ci];
          continue;
        }
        float acc = 0;
        for (int l = 0; l < k; ++l)
          acc += load_f32(Atype, a, a_at(l), tf32) * load_f32(Btype, b, b_at(l), tf32);
        const float alf = static_cast<float>(al), bef = static_cast<float>(be);
        float old = be == 0.0 ? 0.0f : load_f32(Ctype, c, ci, false);
        float out = be == 0.0 ? alf * acc : alf * acc + bef * old;
        switch (Ctype) {
          case CUDA_R_32F: reinterpret_cast<float*>(c)[ci] = out; break;
          case CUDA_R_16BF: reinterpret_cast<__nv_bfloat16*>(c)[ci] = __float2bfloat16(out); break;
          case CUDA_R_16F: reinterpret_cast<__half*>(c)[ci] = __float2half(out); break;
          default: break;
        }
      }
  }
  return CUBLAS_STATUS_SUCCESS;
}

}  // extern "C"
