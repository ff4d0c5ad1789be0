// CPU GEMM: oneDNN's sgemm for f32 and its bf16×bf16→f32 GEMM (AVX-512-BF16/AMX where the CPU has
// them), a plain blocked loop for f64 (gradient checks only).
#include <oneapi/dnnl/dnnl.hpp>

#include <map>
#include <mutex>
#include <tuple>

#include <vector>

#include "kernels/cpu/cpu_backend.h"

namespace lethe::kernels {

namespace {

void check_dnnl(dnnl_status_t st, const GemmArgs& a) {
  LETHE_CHECK(st == dnnl_success, "gemm: oneDNN failed (status ", static_cast<int>(st),
              ") for m=", a.m, " n=", a.n, " k=", a.k);
}

// C = alpha op(A) op(B) + beta C for one matrix, f64.
void gemm_f64(const GemmArgs& g, const double* A, const double* B, double* C) {
  for (int64_t i = 0; i < g.m; ++i) {
    for (int64_t j = 0; j < g.n; ++j) {
      double acc = 0;
      for (int64_t p = 0; p < g.k; ++p) {
        double av = g.trans_a ? A[p * g.lda + i] : A[i * g.lda + p];
        double bv = g.trans_b ? B[j * g.ldb + p] : B[p * g.ldb + j];
        acc += av * bv;
      }
      double prev = g.beta == 0.0 ? 0.0 : g.beta * C[i * g.ldc + j];
      C[i * g.ldc + j] = g.alpha * acc + prev;
    }
  }
}

// Converts an f32 matrix (rows x cols with leading dim ld) to a dense bf16 copy.
void to_bf16(const float* src, int64_t rows, int64_t cols, int64_t ld, std::vector<uint16_t>& dst) {
  dst.resize(static_cast<size_t>(rows * cols));
#pragma omp parallel for if (rows * cols > (1 << 16))
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[r * cols + c] = f32_to_bf16(src[r * ld + c]);
}

// The same values rounded to bf16 but kept as f32: bf16 x bf16 products are exact in f32, so an
// f32 GEMM of rounded operands equals a bf16 GEMM with f32 accumulation (used where the CPU has
// no bf16 instructions and oneDNN would fall back to a slow reference kernel).
void round_to_bf16(const float* src, int64_t rows, int64_t cols, int64_t ld,
                   std::vector<float>& dst) {
  dst.resize(static_cast<size_t>(rows * cols));
#pragma omp parallel for if (rows * cols > (1 << 16))
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      dst[r * cols + c] = bf16_to_f32(f32_to_bf16(src[r * ld + c]));
}

bool cpu_has_native_bf16() {
  static const bool has = [] {
    dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
    return isa == dnnl::cpu_isa::avx512_core_bf16 || isa == dnnl::cpu_isa::avx512_core_amx;
  }();
  return has;
}

// A oneDNN matmul primitive for bf16 A [m,k] x bf16 B [k,n] -> f32 C [m,n], cached per shape.
struct Bf16Matmul {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  std::map<std::tuple<int64_t, int64_t, int64_t, bool, bool, int64_t>, dnnl::matmul> cache;
  std::mutex mu;

  void run(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const uint16_t* a, const uint16_t* b,
           float* c, int64_t ldc, float alpha, float beta) {
    using dt = dnnl::memory::data_type;
    dnnl::memory::desc ad({m, k}, dt::bf16,
                          ta ? dnnl::memory::dims{1, m} : dnnl::memory::dims{k, 1});
    dnnl::memory::desc bd({k, n}, dt::bf16,
                          tb ? dnnl::memory::dims{1, k} : dnnl::memory::dims{n, 1});
    dnnl::memory::desc cd({m, n}, dt::f32, dnnl::memory::dims{ldc, 1});
    std::lock_guard<std::mutex> lock(mu);
    auto key = std::make_tuple(m, n, k, ta, tb, ldc);
    auto it = cache.find(key);
    if (it == cache.end()) {
      dnnl::primitive_attr attr;
      attr.set_output_scales(0, {DNNL_RUNTIME_F32_VAL});
      dnnl::post_ops po;
      po.append_sum(1.0f);
      attr.set_post_ops(po);
      auto pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(ad, bd, cd), attr, engine);
      it = cache.emplace(key, dnnl::matmul(pd)).first;
    }
    // C = alpha * A B + C after pre-scaling C by beta (the sum post-op adds the old C).
    if (beta != 1.0f)
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j)
          c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    dnnl::memory am(ad, engine, const_cast<uint16_t*>(a)), bm(bd, engine, const_cast<uint16_t*>(b));
    dnnl::memory cm(cd, engine, c);
    dnnl::memory sm({{1}, dt::f32, {1}}, engine, &alpha);
    it->second.execute(stream, {{DNNL_ARG_SRC, am},
                                {DNNL_ARG_WEIGHTS, bm},
                                {DNNL_ARG_DST, cm},
                                {DNNL_ARG_ATTR_OUTPUT_SCALES, sm}});
    stream.wait();
  }
};

}  // namespace

void CpuBackend::gemm(const GemmArgs& g) {
  LETHE_CHECK(g.m >= 0 && g.n >= 0 && g.k >= 0, "gemm: negative size");
  if (g.m == 0 || g.n == 0) return;
  char ta = g.trans_a ? 'T' : 'N', tb = g.trans_b ? 'T' : 'N';
  for (int64_t b = 0; b < g.batch; ++b) {
    if (g.dtype == DType::f64) {
      const double* A = static_cast<const double*>(g.a) + b * g.stride_a;
      const double* B = static_cast<const double*>(g.b) + b * g.stride_b;
      double* C = static_cast<double*>(g.c) + b * g.stride_c;
      gemm_f64(g, A, B, C);
      if (g.bias) {
        const double* bias = static_cast<const double*>(g.bias);
        for (int64_t i = 0; i < g.m; ++i)
          for (int64_t j = 0; j < g.n; ++j) C[i * g.ldc + j] += bias[j];
      }
      continue;
    }
    LETHE_CHECK(g.dtype == DType::f32, "gemm: dtype ", dtype_name(g.dtype),
                " not supported on the CPU (f32 or f64; bf16 via GemmCompute::bf16)");
    const float* A = static_cast<const float*>(g.a) + b * g.stride_a;
    const float* B = static_cast<const float*>(g.b) + b * g.stride_b;
    float* C = static_cast<float*>(g.c) + b * g.stride_c;
    if (g.k == 0) {
      for (int64_t i = 0; i < g.m; ++i)
        for (int64_t j = 0; j < g.n; ++j)
          C[i * g.ldc + j] = g.beta == 0.0 ? 0.f : static_cast<float>(g.beta) * C[i * g.ldc + j];
    } else if (g.compute == GemmCompute::bf16) {
      // Stored shapes of A and B (before the transposes).
      int64_t a_rows = g.trans_a ? g.k : g.m, a_cols = g.trans_a ? g.m : g.k;
      int64_t b_rows = g.trans_b ? g.n : g.k, b_cols = g.trans_b ? g.k : g.n;
      if (cpu_has_native_bf16()) {
        static Bf16Matmul mm;
        thread_local std::vector<uint16_t> abuf, bbuf;
        to_bf16(A, a_rows, a_cols, g.lda, abuf);
        to_bf16(B, b_rows, b_cols, g.ldb, bbuf);
        try {
          mm.run(g.trans_a, g.trans_b, g.m, g.n, g.k, abuf.data(), bbuf.data(), C, g.ldc,
                 static_cast<float>(g.alpha), static_cast<float>(g.beta));
        } catch (const dnnl::error& e) {
          LETHE_FAIL("gemm: oneDNN bf16 matmul failed for m=", g.m, " n=", g.n, " k=", g.k, ": ",
                     e.what());
        }
      } else {
        thread_local std::vector<float> abuf, bbuf;
        round_to_bf16(A, a_rows, a_cols, g.lda, abuf);
        round_to_bf16(B, b_rows, b_cols, g.ldb, bbuf);
        check_dnnl(dnnl_sgemm(ta, tb, g.m, g.n, g.k, static_cast<float>(g.alpha), abuf.data(),
                              a_cols, bbuf.data(), b_cols, static_cast<float>(g.beta), C, g.ldc),
                   g);
      }
    } else {
      check_dnnl(dnnl_sgemm(ta, tb, g.m, g.n, g.k, static_cast<float>(g.alpha), A, g.lda, B, g.ldb,
                            static_cast<float>(g.beta), C, g.ldc),
                 g);
    }
    if (g.bias) {
      const float* bias = static_cast<const float*>(g.bias);
#pragma omp parallel for if (g.m * g.n > (1 << 15))
      for (int64_t i = 0; i < g.m; ++i)
        for (int64_t j = 0; j < g.n; ++j) C[i * g.ldc + j] += bias[j];
    }
  }
}

}  // namespace lethe::kernels
