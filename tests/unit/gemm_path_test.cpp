// The CPU backend's GEMM through oneDNN matmul primitives (the default) against the earlier
// dnnl_sgemm path and an f64 loop: odd sizes, every transpose, padded leading dimensions, batches
// (strided and broadcast), alpha, beta (accumulating into C), bias and the ReLU epilogue; C
// poisoned with NaN where beta = 0 must be overwritten. bf16 operands against the f64 product of
// the rounded operands.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "kernels/dtype.h"
#include "tests/common/compare.h"

namespace lethe::kernels {
namespace {

using lethe::testing::within;

struct Shape {
  int64_t m, n, k;
};

// Deterministic values in [-1, 1).
std::vector<float> values(size_t n, uint32_t seed) {
  std::vector<float> v(n);
  uint32_t x = seed * 2654435761u + 12345u;
  for (float& f : v) {
    x = x * 1664525u + 1013904223u;
    f = static_cast<float>((x >> 8) & 0xFFFF) / 32768.0f - 1.0f;
  }
  return v;
}

class PathGuard {
 public:
  explicit PathGuard(CpuGemmPath p) : prev_(cpu_gemm_path()) { set_cpu_gemm_path(p); }
  ~PathGuard() { set_cpu_gemm_path(prev_); }

 private:
  CpuGemmPath prev_;
};

// f64 reference of one call, with operands optionally rounded to bf16 first.
std::vector<double> reference(const GemmArgs& g, const std::vector<float>& c0, bool round) {
  std::vector<double> c(c0.begin(), c0.end());
  auto rd = [&](float v) { return round ? static_cast<double>(bf16_to_f32(f32_to_bf16(v))) : v; };
  const float* A = static_cast<const float*>(g.a);
  const float* B = static_cast<const float*>(g.b);
  const float* bias = static_cast<const float*>(g.bias);
  for (int64_t bi = 0; bi < g.batch; ++bi)
    for (int64_t i = 0; i < g.m; ++i)
      for (int64_t j = 0; j < g.n; ++j) {
        double acc = 0;
        for (int64_t p = 0; p < g.k; ++p) {
          const float av =
              g.trans_a ? A[bi * g.stride_a + p * g.lda + i] : A[bi * g.stride_a + i * g.lda + p];
          const float bv =
              g.trans_b ? B[bi * g.stride_b + j * g.ldb + p] : B[bi * g.stride_b + p * g.ldb + j];
          acc += rd(av) * rd(bv);
        }
        double& out = c[static_cast<size_t>(bi * g.stride_c + i * g.ldc + j)];
        out = g.alpha * acc + (g.beta == 0 ? 0.0 : g.beta * out) + (bias ? bias[j] : 0.0);
        if (g.relu) out = out > 0 ? out : 0.0;
      }
  return c;
}

TEST(CpuGemmPaths, MatmulPrimitivesEqualSgemmAndTheF64Product) {
  const Shape shapes[] = {{1, 1, 1}, {7, 13, 5}, {33, 17, 65}, {129, 3, 257}, {2, 70, 31}};
  int calls = 0, primitive_calls = 0;
  for (const Shape& s : shapes)
    for (int t = 0; t < 4; ++t)
      for (int variant = 0; variant < 6; ++variant) {
        GemmArgs g;
        g.trans_a = t & 1;
        g.trans_b = t & 2;
        g.m = s.m;
        g.n = s.n;
        g.k = s.k;
        const int pad = variant % 2 ? 3 : 0;  // padded leading dimensions
        const int64_t a_rows = g.trans_a ? s.k : s.m, a_cols = g.trans_a ? s.m : s.k;
        const int64_t b_rows = g.trans_b ? s.n : s.k, b_cols = g.trans_b ? s.k : s.n;
        g.lda = a_cols + pad;
        g.ldb = b_cols + pad;
        g.ldc = s.n + pad;
        g.batch = variant >= 4 ? 3 : 1;
        g.stride_a = g.batch > 1 ? a_rows * g.lda : 0;
        g.stride_b = variant == 5 ? 0 : (g.batch > 1 ? b_rows * g.ldb : 0);  // 5: broadcast B
        g.stride_c = g.batch > 1 ? s.m * g.ldc : 0;
        g.alpha = variant == 2 ? -0.5 : 1.0;
        g.beta = variant == 1 ? 1.0 : (variant == 3 ? 0.75 : 0.0);
        const std::vector<float> a = values(static_cast<size_t>(g.batch * a_rows * g.lda), 1);
        const std::vector<float> b = values(static_cast<size_t>(g.batch * b_rows * g.ldb), 2);
        const std::vector<float> bias = values(static_cast<size_t>(s.n), 3);
        g.a = a.data();
        g.b = b.data();
        if (variant % 3 != 2) g.bias = bias.data();
        g.relu =
            variant == 3 || variant == 4 || (variant == 2 && t == 1);  // linear_relu's epilogue
        std::vector<float> c0 = values(static_cast<size_t>(g.batch * s.m * g.ldc), 4);
        if (g.beta == 0) std::fill(c0.begin(), c0.end(), std::numeric_limits<float>::quiet_NaN());
        const std::string what = "m=" + std::to_string(s.m) + " n=" + std::to_string(s.n) +
                                 " k=" + std::to_string(s.k) + " ta=" + std::to_string(g.trans_a) +
                                 " tb=" + std::to_string(g.trans_b) +
                                 " variant=" + std::to_string(variant);
        const std::vector<double> want = reference(g, c0, false);
        std::vector<float> c_mm = c0, c_sg = c0;
        {
          PathGuard p(CpuGemmPath::matmul);
          g.c = c_mm.data();
          cpu_backend().gemm(g);
          if (cpu_gemm_implementation(g).rfind("sgemm", 0) != 0) ++primitive_calls;
        }
        {
          PathGuard p(CpuGemmPath::sgemm);
          g.c = c_sg.data();
          cpu_backend().gemm(g);
        }
        int bad = 0;
        for (int64_t bi = 0; bi < g.batch; ++bi)
          for (int64_t i = 0; i < s.m; ++i)
            for (int64_t j = 0; j < g.ldc; ++j) {
              const size_t at = static_cast<size_t>(bi * g.stride_c + i * g.ldc + j);
              if (j >= s.n) {  // the padding of C is never written
                const bool both_nan = std::isnan(c_mm[at]) && std::isnan(c0[at]);
                if (!both_nan && c_mm[at] != c0[at] && bad++ < 3)
                  ADD_FAILURE() << what << ": padding of C written at " << at;
                continue;
              }
              const double tol = 1e-5 * (1 + std::sqrt(static_cast<double>(s.k)));
              if ((!within(c_mm[at], want[at], tol, 1e-5) ||
                   !within(c_mm[at], c_sg[at], tol, 1e-5)) &&
                  bad++ < 3)
                ADD_FAILURE() << what << " at " << at << ": matmul " << c_mm[at] << ", sgemm "
                              << c_sg[at] << ", f64 " << want[at];
            }
        EXPECT_EQ(bad, 0) << what;
        ++calls;
      }
  EXPECT_EQ(calls, 5 * 4 * 6);
  // Most calls ran a oneDNN primitive (not a fallback): the comparison compared two paths.
  EXPECT_GT(primitive_calls, calls / 2);
}

TEST(CpuGemmPaths, Bf16OperandsAccumulateInF32) {
  GemmArgs g;
  g.compute = GemmCompute::bf16;
  g.m = 37;
  g.n = 29;
  g.k = 83;
  g.trans_b = true;
  g.lda = g.k;
  g.ldb = g.k;
  g.ldc = g.n;
  g.beta = 1.0;
  const std::vector<float> a = values(static_cast<size_t>(g.m * g.k), 5);
  const std::vector<float> b = values(static_cast<size_t>(g.n * g.k), 6);
  const std::vector<float> c0 = values(static_cast<size_t>(g.m * g.n), 7);
  g.a = a.data();
  g.b = b.data();
  const std::vector<double> want = reference(g, c0, true);
  for (CpuGemmPath path : {CpuGemmPath::matmul, CpuGemmPath::sgemm}) {
    PathGuard p(path);
    std::vector<float> c = c0;
    g.c = c.data();
    cpu_backend().gemm(g);
    for (size_t i = 0; i < c.size(); ++i)
      ASSERT_TRUE(within(c[i], want[i], 1e-4, 1e-5))
          << (path == CpuGemmPath::matmul ? "matmul" : "sgemm") << " [" << i << "] " << c[i]
          << " vs " << want[i];
  }
  EXPECT_FALSE(cpu_gemm_description().empty());
}

}  // namespace
}  // namespace lethe::kernels
