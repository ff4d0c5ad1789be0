// Direct tests of the CUDA backend's primitives against the CPU backend or host references:
// odd sizes (1, 7, 1023, 4097), every cast pair, RNG streams, GEMM transposes, reductions, losses.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda_test_util.h"
#include "kernels/cuda/cuda_debug.h"
#include "kernels/error.h"
#include "tests/common/compare.h"

namespace lethe::testing {
namespace {

using kernels::Backend;
using kernels::Layout;

const int64_t kSizes[] = {1, 7, 1023, 4097};
const DType kAllDTypes[] = {DType::f64, DType::f32, DType::f16, DType::bf16,
                            DType::i32, DType::i64, DType::u8,  DType::boolean};

TEST(CudaBackend, ReportsWhyItIsUnavailable) {
  Backend* gpu = kernels::cuda_backend();
  if (gpu == nullptr) {
    EXPECT_FALSE(kernels::cuda_unavailable_reason().empty());
    GTEST_SKIP() << kernels::cuda_unavailable_reason();
  }
  EXPECT_STREQ(gpu->name(), "cuda");
  EXPECT_EQ(kernels::cuda_backend(), gpu);  // cached
}

TEST(CudaBackend, RoundTripsHostMemory) {
  LETHE_REQUIRE_CUDA(gpu);
  for (int64_t n : kSizes) {
    std::vector<uint8_t> host(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) host[i] = static_cast<uint8_t>(i * 37 + 11);
    DeviceBuffer a = upload(*gpu, host);
    DeviceBuffer b(*gpu, host.size());
    gpu->copy_on_device(b.get(), a.get(), host.size());
    EXPECT_EQ(download<uint8_t>(*gpu, b, host.size()), host) << "n=" << n;
  }
}

TEST(CudaBackend, CachingAllocatorReusesFreedBlocks) {
  LETHE_REQUIRE_CUDA(gpu);
  void* p = gpu->allocate(1000);
  gpu->deallocate(p, 1000);
  void* q = gpu->allocate(1000);  // same rounded size: the cached block comes back
  EXPECT_EQ(p, q);
  gpu->deallocate(q, 1000);
}

TEST(CudaBackend, OutOfMemoryIsAnError) {
  LETHE_REQUIRE_CUDA(gpu);
  try {
    gpu->allocate(size_t{1} << 50);  // 1 PiB
    FAIL() << "allocating 1 PiB succeeded";
  } catch (const lethe::Error& e) {
    EXPECT_NE(std::string(e.what()).find("CUDA out of memory"), std::string::npos) << e.what();
  }
  // The backend still works afterwards.
  DeviceBuffer buf = upload(*gpu, std::vector<float>{1.f, 2.f});
  EXPECT_EQ(download<float>(*gpu, buf, 2), (std::vector<float>{1.f, 2.f}));
}

// Source values for a cast test: small non-negative numbers (every conversion is defined), and
// for float sources also specials, halfway cases and random f32 bit patterns.
std::vector<double> cast_source(DType from, int64_t n, uint64_t seed) {
  std::vector<double> v = random_values(static_cast<size_t>(n), seed, 0.0, 200.0);
  if (from == DType::boolean || from == DType::u8 || from == DType::i32 || from == DType::i64) {
    for (double& x : v) x = std::floor(x);
    if (from == DType::boolean)
      for (double& x : v) x = std::fmod(x, 2.0);
  }
  return v;
}

bool float_dtype(DType t) {
  return is_floating(t);
}

// Builds the host source array of dtype `from` by casting doubles on the CPU (trusted path).
std::vector<uint8_t> host_array(DType from, const std::vector<double>& values) {
  std::vector<uint8_t> bytes(values.size() * dtype_size(from));
  kernels::cpu_backend().cast(DType::f64, values.data(), from, bytes.data(),
                              static_cast<int64_t>(values.size()));
  return bytes;
}

// Bitwise equality, except that any NaN equals any NaN for float dtypes.
::testing::AssertionResult same_values(DType t, const std::vector<uint8_t>& got,
                                       const std::vector<uint8_t>& want) {
  size_t es = dtype_size(t), n = want.size() / es;
  std::vector<double> g(n), w(n);
  if (float_dtype(t)) {
    kernels::cpu_backend().cast(t, got.data(), DType::f64, g.data(), static_cast<int64_t>(n));
    kernels::cpu_backend().cast(t, want.data(), DType::f64, w.data(), static_cast<int64_t>(n));
  }
  for (size_t i = 0; i < n; ++i) {
    if (std::memcmp(got.data() + i * es, want.data() + i * es, es) == 0) continue;
    if (float_dtype(t) && std::isnan(g[i]) && std::isnan(w[i])) continue;
    return ::testing::AssertionFailure()
           << "element " << i << " of " << n << " differs (" << dtype_name(t) << ")";
  }
  return ::testing::AssertionSuccess();
}

TEST(CudaBackend, CastsMatchCpuBitwiseForEveryDTypePair) {
  LETHE_REQUIRE_CUDA(gpu);
  for (DType from : kAllDTypes) {
    for (DType to : kAllDTypes) {
      for (int64_t n : kSizes) {
        std::vector<uint8_t> src = host_array(from, cast_source(from, n, 1000 + n));
        if (from == DType::f32 && (to == DType::f16 || to == DType::bf16 || to == DType::f64)) {
          // Random bit patterns: every rounding path, subnormals, infinities, NaNs.
          std::vector<double> bits =
              random_values(static_cast<size_t>(n), 77 + n, 0.0, 4294967296.0);
          for (int64_t i = 0; i < n; ++i) {
            uint32_t u = static_cast<uint32_t>(bits[i]);
            std::memcpy(src.data() + i * 4, &u, 4);
          }
        }
        std::vector<uint8_t> want(static_cast<size_t>(n) * dtype_size(to));
        kernels::cpu_backend().cast(from, src.data(), to, want.data(), n);
        DeviceBuffer dsrc = upload(*gpu, src);
        DeviceBuffer ddst = poisoned<uint8_t>(*gpu, want.size());
        gpu->cast(from, dsrc.get(), to, ddst.get(), n);
        EXPECT_TRUE(same_values(to, download<uint8_t>(*gpu, ddst, want.size()), want))
            << dtype_name(from) << " -> " << dtype_name(to) << " n=" << n;
      }
    }
  }
}

TEST(CudaBackend, F32ToF16HalfwayAndSubnormalCases) {
  LETHE_REQUIRE_CUDA(gpu);
  std::vector<float> src = {0.f,       -0.f,       1.f,           65504.f,     65520.f,
                            65519.99f, 1e-8f,      6.1e-5f,       5.96e-8f,    2.98e-8f,
                            2.99e-8f,  1.0009766f, 1.00048828f,   1.00146484f, -3.5e-6f,
                            INFINITY,  -INFINITY,  std::nanf(""), 3.0e38f,     1.17549435e-38f};
  for (DType to : {DType::f16, DType::bf16}) {
    std::vector<uint16_t> want(src.size());
    kernels::cpu_backend().cast(DType::f32, src.data(), to, want.data(),
                                static_cast<int64_t>(src.size()));
    DeviceBuffer d = upload(*gpu, src);
    DeviceBuffer out = poisoned<uint16_t>(*gpu, src.size());
    gpu->cast(DType::f32, d.get(), to, out.get(), static_cast<int64_t>(src.size()));
    EXPECT_EQ(download<uint16_t>(*gpu, out, src.size()), want) << dtype_name(to);
  }
}

TEST(CudaBackend, FillMatchesCpuForEveryDType) {
  LETHE_REQUIRE_CUDA(gpu);
  for (DType t : kAllDTypes) {
    for (int64_t n : kSizes) {
      size_t bytes = static_cast<size_t>(n) * dtype_size(t);
      std::vector<uint8_t> want(bytes);
      kernels::cpu_backend().fill(t, want.data(), n, 3.0);
      DeviceBuffer d = poisoned<uint8_t>(*gpu, bytes);
      gpu->fill(t, d.get(), n, 3.0);
      EXPECT_EQ(download<uint8_t>(*gpu, d, bytes), want) << dtype_name(t) << " n=" << n;
    }
  }
}

TEST(CudaBackend, UniformStreamsAreBitIdenticalToCpu) {
  LETHE_REQUIRE_CUDA(gpu);
  for (int64_t n : kSizes) {
    for (uint64_t offset : {uint64_t{0}, uint64_t{12345}, uint64_t{1} << 40}) {
      std::vector<double> want(static_cast<size_t>(n));
      kernels::cpu_backend().fill_uniform(DType::f64, want.data(), n, 42, offset, -0.5, 2.0);
      DeviceBuffer d = poisoned<double>(*gpu, static_cast<size_t>(n));
      gpu->fill_uniform(DType::f64, d.get(), n, 42, offset, -0.5, 2.0);
      std::vector<double> got = download<double>(*gpu, d, static_cast<size_t>(n));
      EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * 8), 0)
          << "n=" << n << " offset=" << offset;

      std::vector<float> want32(static_cast<size_t>(n));
      kernels::cpu_backend().fill_uniform(DType::f32, want32.data(), n, 7, offset, 0.0, 1.0);
      DeviceBuffer d32 = poisoned<float>(*gpu, static_cast<size_t>(n));
      gpu->fill_uniform(DType::f32, d32.get(), n, 7, offset, 0.0, 1.0);
      EXPECT_EQ(download<float>(*gpu, d32, static_cast<size_t>(n)), want32) << "f32 n=" << n;
    }
  }
}

TEST(CudaBackend, DropoutMaskIsIdenticalToCpu) {
  LETHE_REQUIRE_CUDA(gpu);
  for (int64_t n : kSizes) {
    for (double p : {0.0, 0.1, 0.5}) {
      std::vector<float> want(static_cast<size_t>(n));
      kernels::cpu_backend().dropout_mask(DType::f32, want.data(), n, 9, 100, p);
      DeviceBuffer d = poisoned<float>(*gpu, static_cast<size_t>(n));
      gpu->dropout_mask(DType::f32, d.get(), n, 9, 100, p);
      EXPECT_EQ(download<float>(*gpu, d, static_cast<size_t>(n)), want) << "n=" << n << " p=" << p;
    }
  }
}

TEST(CudaBackend, NormalsMatchCpuClosely) {
  LETHE_REQUIRE_CUDA(gpu);
  for (int64_t n : kSizes) {
    std::vector<double> want(static_cast<size_t>(n));
    kernels::cpu_backend().fill_normal(DType::f64, want.data(), n, 5, 3, 1.0, 2.0);
    DeviceBuffer d = poisoned<double>(*gpu, static_cast<size_t>(n));
    gpu->fill_normal(DType::f64, d.get(), n, 5, 3, 1.0, 2.0);
    std::vector<double> got = download<double>(*gpu, d, static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(got[i], want[i], 1e-12 * (1 + std::abs(want[i])));
  }
}

Layout make_layout(std::vector<int64_t> shape, std::vector<int64_t> stride) {
  Layout l;
  l.ndim = static_cast<int>(shape.size());
  for (int d = 0; d < l.ndim; ++d) {
    l.shape[d] = shape[d];
    l.stride[d] = stride[d];
  }
  return l;
}

TEST(CudaBackend, CopyStridedTransposesAndBroadcasts) {
  LETHE_REQUIRE_CUDA(gpu);
  // src [5, 7, 3] permuted to [3, 5, 7]; and a [7] row broadcast to [5, 7].
  std::vector<float> src = random_as<float>(5 * 7 * 3, 3, -1, 1);
  struct Case {
    Layout dst, src;
  } cases[] = {
      {make_layout({3, 5, 7}, {35, 7, 1}), make_layout({3, 5, 7}, {1, 21, 3})},
      {make_layout({5, 7}, {7, 1}), make_layout({5, 7}, {0, 1})},
      {make_layout({4, 1023}, {1023, 1}), make_layout({4, 1023}, {1, 4})},
      {make_layout({}, {}), make_layout({}, {})},
  };
  std::vector<float> big = random_as<float>(4 * 1023, 4, -1, 1);
  for (const Case& c : cases) {
    const std::vector<float>& s = c.src.numel() > static_cast<int64_t>(src.size()) ? big : src;
    int64_t n = c.dst.numel();
    std::vector<float> want(static_cast<size_t>(n));
    kernels::cpu_backend().copy_strided(DType::f32, want.data(), c.dst, s.data(), c.src);
    DeviceBuffer ds = upload(*gpu, s);
    DeviceBuffer dd = poisoned<float>(*gpu, static_cast<size_t>(n));
    gpu->copy_strided(DType::f32, dd.get(), c.dst, ds.get(), c.src);
    EXPECT_EQ(download<float>(*gpu, dd, static_cast<size_t>(n)), want) << "ndim " << c.dst.ndim;
  }
}

TEST(CudaBackend, UnaryAndBackwardMatchCpu) {
  LETHE_REQUIRE_CUDA(gpu);
  using kernels::UnaryOp;
  for (UnaryOp op :
       {UnaryOp::neg, UnaryOp::relu, UnaryOp::gelu, UnaryOp::exp, UnaryOp::log, UnaryOp::sqrt,
        UnaryOp::square, UnaryOp::tanh, UnaryOp::sigmoid, UnaryOp::log_sigmoid, UnaryOp::silu}) {
    bool positive = op == UnaryOp::log || op == UnaryOp::sqrt;
    for (int64_t n : kSizes) {
      size_t sn = static_cast<size_t>(n);
      std::vector<float> x = random_as<float>(sn, 10 + n, positive ? 0.1 : -4, 4);
      std::vector<float> dy = random_as<float>(sn, 20 + n, -1, 1);
      std::vector<float> y(sn), dx(sn);
      kernels::cpu_backend().unary(op, DType::f32, n, x.data(), y.data());
      kernels::cpu_backend().unary_backward(op, DType::f32, n, x.data(), y.data(), dy.data(),
                                            dx.data());
      DeviceBuffer dxs = upload(*gpu, x), dys = upload(*gpu, dy);
      DeviceBuffer dyo = poisoned<float>(*gpu, sn), ddx = poisoned<float>(*gpu, sn);
      gpu->unary(op, DType::f32, n, dxs.get(), dyo.get());
      DeviceBuffer ycpu = upload(*gpu, y);  // the backward gets the same y as the CPU's
      gpu->unary_backward(op, DType::f32, n, dxs.get(), ycpu.get(), dys.get(), ddx.get());
      EXPECT_LE(rel_error(download<float>(*gpu, dyo, sn), y), 1e-6) << int(op) << " n=" << n;
      EXPECT_LE(rel_error(download<float>(*gpu, ddx, sn), dx), 1e-6) << int(op) << " n=" << n;
    }
  }
}

TEST(CudaBackend, BinaryBroadcastsLikeCpu) {
  LETHE_REQUIRE_CUDA(gpu);
  using kernels::BinaryOp;
  // out [3, 1023, 7]; a full; b broadcast along dims 0 and 2 ([1, 1023, 1]); and a transposed a.
  Layout out = make_layout({3, 1023, 7}, {1023 * 7, 7, 1});
  Layout a_full = out;
  Layout a_trans = make_layout({3, 1023, 7}, {1, 21, 3});
  Layout b_bcast = make_layout({3, 1023, 7}, {0, 1, 0});
  size_t n = 3 * 1023 * 7;
  std::vector<double> a = random_values(n, 1, -2, 2), b = random_values(1023, 2, 0.5, 2);
  for (BinaryOp op : {BinaryOp::add, BinaryOp::sub, BinaryOp::mul, BinaryOp::div}) {
    for (const Layout& al : {a_full, a_trans}) {
      std::vector<double> want(n);
      kernels::cpu_backend().binary(op, DType::f64, want.data(), out, a.data(), al, b.data(),
                                    b_bcast);
      DeviceBuffer da = upload(*gpu, a), db = upload(*gpu, b), dout = poisoned<double>(*gpu, n);
      gpu->binary(op, DType::f64, dout.get(), out, da.get(), al, db.get(), b_bcast);
      EXPECT_LE(rel_error(download<double>(*gpu, dout, n), want), 1e-15) << int(op);
    }
  }
}

TEST(CudaBackend, AxpbyMatchesHost) {
  LETHE_REQUIRE_CUDA(gpu);
  for (int64_t n : kSizes) {
    size_t sn = static_cast<size_t>(n);
    std::vector<double> x = random_values(sn, 1, -1, 1), y = random_values(sn, 2, -1, 1);
    std::vector<double> want(sn);
    for (size_t i = 0; i < sn; ++i) want[i] = 0.5 * x[i] - 2.0 * y[i];
    DeviceBuffer dx = upload(*gpu, x), dy = upload(*gpu, y);
    gpu->axpby(DType::f64, n, 0.5, dx.get(), -2.0, dy.get());
    EXPECT_LE(rel_error(download<double>(*gpu, dy, sn), want), 1e-15);
    DeviceBuffer dz = poisoned<double>(*gpu, sn);  // beta = 0 must ignore the NaNs in y
    gpu->axpby(DType::f64, n, 3.0, dx.get(), 0.0, dz.get());
    std::vector<double> z = download<double>(*gpu, dz, sn);
    for (size_t i = 0; i < sn; ++i) EXPECT_EQ(z[i], 3.0 * x[i]);
  }
}

TEST(CudaBackend, ReduceSumDotAndGramMatchHostDoubles) {
  LETHE_REQUIRE_CUDA(gpu);
  struct Shape3 {
    int64_t outer, reduce, inner;
  } shapes[] = {{1, 1, 1},     {7, 1023, 1}, {1, 4097, 1}, {3, 7, 5},
                {1, 4097, 33}, {5, 1, 7},    {2, 0, 3},    {70000, 2, 1}};
  for (const Shape3& s : shapes) {
    size_t n = static_cast<size_t>(s.outer * s.reduce * s.inner);
    std::vector<float> x = random_as<float>(n, s.outer * 31 + s.reduce, -1, 1);
    std::vector<double> want(static_cast<size_t>(s.outer * s.inner), 0.0);
    for (int64_t o = 0; o < s.outer; ++o)
      for (int64_t r = 0; r < s.reduce; ++r)
        for (int64_t i = 0; i < s.inner; ++i)
          want[o * s.inner + i] += x[(o * s.reduce + r) * s.inner + i];
    DeviceBuffer dx = upload(*gpu, x);
    DeviceBuffer dout = poisoned<float>(*gpu, want.size());
    gpu->reduce_sum(DType::f32, dx.get(), s.outer, s.reduce, s.inner, dout.get());
    EXPECT_LE(rel_error(download<float>(*gpu, dout, want.size()), want), 1e-7)
        << s.outer << "x" << s.reduce << "x" << s.inner;
  }
  for (int64_t n : kSizes) {
    size_t sn = static_cast<size_t>(n);
    std::vector<std::vector<double>> bufs;
    for (int i = 0; i < 3; ++i) bufs.push_back(random_values(sn, 50 + i, -1, 1));
    std::vector<DeviceBuffer> dev;
    std::vector<const void*> ptrs;
    for (auto& b : bufs) {
      dev.push_back(upload(*gpu, b));
      ptrs.push_back(dev.back().get());
    }
    double g[9], want[9];
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) {
        double acc = 0;
        for (size_t e = 0; e < sn; ++e) acc += bufs[i][e] * bufs[j][e];
        want[i * 3 + j] = acc;
      }
    gpu->gram(DType::f64, n, 3, ptrs.data(), g);
    for (int i = 0; i < 9; ++i) EXPECT_NEAR(g[i], want[i], 1e-12 * (1 + std::abs(want[i])));
    EXPECT_NEAR(gpu->dot(DType::f64, n, ptrs[0], ptrs[2]), want[2],
                1e-12 * (1 + std::abs(want[2])));
  }
}

// Host reference: C = alpha op(A) op(B) + beta C (+ bias), in double; bf16 rounds A and B first.
void reference_gemm(const kernels::GemmArgs& g, const std::vector<double>& a,
                    const std::vector<double>& b, std::vector<double>& c,
                    const std::vector<double>& bias, bool round_bf16) {
  auto rnd = [&](double v) {
    return round_bf16 ? static_cast<double>(bf16_to_f32(f32_to_bf16(static_cast<float>(v)))) : v;
  };
  for (int64_t bt = 0; bt < g.batch; ++bt)
    for (int64_t i = 0; i < g.m; ++i)
      for (int64_t j = 0; j < g.n; ++j) {
        double acc = 0;
        for (int64_t p = 0; p < g.k; ++p) {
          double av = a[bt * g.stride_a + (g.trans_a ? p * g.lda + i : i * g.lda + p)];
          double bv = b[bt * g.stride_b + (g.trans_b ? j * g.ldb + p : p * g.ldb + j)];
          acc += rnd(av) * rnd(bv);
        }
        double& cv = c[bt * g.stride_c + i * g.ldc + j];
        cv = g.alpha * acc + (g.beta == 0.0 ? 0.0 : g.beta * cv) + (bias.empty() ? 0.0 : bias[j]);
      }
}

template <typename T>
void run_gemm_case(Backend& gpu, kernels::GemmArgs g, bool with_bias, const std::string& what) {
  int64_t a_rows = g.trans_a ? g.k : g.m, a_cols = g.trans_a ? g.m : g.k;
  int64_t b_rows = g.trans_b ? g.n : g.k, b_cols = g.trans_b ? g.k : g.n;
  g.lda = a_cols + 3;  // padded leading dims
  g.ldb = b_cols + 1;
  g.ldc = g.n + 2;
  g.stride_a = a_rows * g.lda + 5;
  g.stride_b = g.batch == 3 ? 0 : b_rows * g.ldb;  // batch 3: one B shared by every batch
  g.stride_c = g.m * g.ldc;
  size_t na = static_cast<size_t>(g.stride_a * g.batch), nb = static_cast<size_t>(b_rows * g.ldb);
  if (g.stride_b) nb = static_cast<size_t>(g.stride_b * g.batch);
  size_t nc = static_cast<size_t>(g.stride_c * g.batch);
  std::vector<double> a = random_values(na, 1 + g.m, -1, 1), b = random_values(nb, 2 + g.n, -1, 1);
  std::vector<double> c = random_values(nc, 3 + g.k, -1, 1);
  std::vector<double> bias =
      with_bias ? random_values(static_cast<size_t>(g.n), 4, -1, 1) : std::vector<double>();
  // Round the inputs to T first so host and device see the same numbers.
  for (auto* v : {&a, &b, &c, &bias})
    for (double& x : *v) x = static_cast<double>(static_cast<T>(x));
  // β = 0 must ignore C entirely (BLAS semantics: 0·NaN is not computed), so C's m×n blocks start
  // as NaN; the padding columns (ldc > n) and the gaps keep random values that must survive.
  if (g.beta == 0.0)
    for (int64_t bt = 0; bt < g.batch; ++bt)
      for (int64_t i = 0; i < g.m; ++i)
        for (int64_t j = 0; j < g.n; ++j)
          c[static_cast<size_t>(bt * g.stride_c + i * g.ldc + j)] =
              std::numeric_limits<double>::quiet_NaN();
  std::vector<double> want = c;
  reference_gemm(g, a, b, want, bias, g.compute == kernels::GemmCompute::bf16);
  std::vector<T> at(a.begin(), a.end()), bt(b.begin(), b.end()), ct(c.begin(), c.end()),
      biast(bias.begin(), bias.end());
  DeviceBuffer da = upload(gpu, at), db = upload(gpu, bt), dc = upload(gpu, ct),
               dbias = upload(gpu, biast);
  g.a = da.get();
  g.b = db.get();
  g.c = dc.get();
  g.bias = with_bias ? dbias.get() : nullptr;
  gpu.gemm(g);
  std::vector<T> got = download<T>(gpu, dc, nc);
  double tol = sizeof(T) == 8 ? 1e-13 : 1e-5;
  EXPECT_LE(rel_error(got, want), tol) << what;
}

TEST(CudaBackend, GemmAllTransposesBatchesBiasAndBf16) {
  LETHE_REQUIRE_CUDA(gpu);
  struct Dims {
    int64_t m, n, k, batch;
  } dims[] = {{7, 13, 33, 1}, {1, 5, 4097, 2}, {64, 1, 3, 3}, {33, 65, 1, 1}, {4, 6, 0, 2}};
  for (const Dims& d : dims)
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (int variant = 0; variant < 4; ++variant) {
          kernels::GemmArgs g;
          g.m = d.m;
          g.n = d.n;
          g.k = d.k;
          g.batch = d.batch;
          g.trans_a = ta;
          g.trans_b = tb;
          g.alpha = variant == 0 ? 1.0 : 0.75;
          g.beta = variant >= 2 ? 0.5 : 0.0;
          bool bias = variant % 2 == 1;
          std::string what = "m=" + std::to_string(d.m) + " n=" + std::to_string(d.n) +
                             " k=" + std::to_string(d.k) + " batch=" + std::to_string(d.batch) +
                             " ta=" + std::to_string(ta) + " tb=" + std::to_string(tb) +
                             " variant=" + std::to_string(variant);
          g.dtype = DType::f32;
          run_gemm_case<float>(*gpu, g, bias, "f32 " + what);
          g.compute = kernels::GemmCompute::bf16;
          run_gemm_case<float>(*gpu, g, bias, "bf16 " + what);
          g.compute = kernels::GemmCompute::native;
          g.dtype = DType::f64;
          run_gemm_case<double>(*gpu, g, bias, "f64 " + what);
        }
}

// ---- heavier primitives against the CPU backend (the reference) ---------------------------------

// The fused residual add + layer norm (add_layernorm_forward), with and without the dropout on x,
// gives what dropout_mask + mul, binary add and layernorm_forward give on the same device, bit
// for bit (sum, norm, mean, rstd), and within 1e-5 of the CPU's fused primitive (the sum equal).
// Row widths: odd ones (scalar loads), multiples of 4 (16-byte loads: 768 is OPT-125m's) and one
// wider than shared memory holds (rows read from global memory); a large common offset; poisoned
// outputs.
TEST(CudaBackend, FusedResidualLayernormIsAddThenLayernorm) {
  LETHE_REQUIRE_CUDA(gpu);
  // 240 KB of f32 per row: more than an H100's (and the emulator's) 227 KB of shared memory.
  const int64_t too_wide = 60000;
  for (int64_t cols : {int64_t{1}, int64_t{7}, int64_t{33}, int64_t{768}, int64_t{1023},
                       int64_t{1024}, int64_t{4097}, too_wide}) {
    for (double p : {0.0, 0.3}) {
      SCOPED_TRACE("cols " + std::to_string(cols) + " p " + std::to_string(p));
      const int64_t rows = cols > 5000 ? 2 : 5;
      const size_t n = static_cast<size_t>(rows * cols);
      const uint64_t seed = 77, offset = 1000;
      std::vector<float> x = random_as<float>(n, 1, 40, 44), r = random_as<float>(n, 2, -1, 1);
      std::vector<float> gamma = random_as<float>(cols, 3, 0.5, 1.5),
                         beta = random_as<float>(cols, 4, -0.5, 0.5);
      DeviceBuffer dx = upload(*gpu, x), dr = upload(*gpu, r), dg = upload(*gpu, gamma),
                   db = upload(*gpu, beta);
      DeviceBuffer sum = poisoned<float>(*gpu, n), y = poisoned<float>(*gpu, n),
                   mean = poisoned<double>(*gpu, rows), rstd = poisoned<double>(*gpu, rows);
      gpu->add_layernorm_forward(DType::f32, rows, cols, dx.get(), dr.get(), dg.get(), db.get(),
                                 1e-5, sum.get(), y.get(), mean.as<double>(), rstd.as<double>(), p,
                                 seed, offset);
      const Layout flat = make_layout({rows * cols}, {1});
      DeviceBuffer sum2 = poisoned<float>(*gpu, n), y2 = poisoned<float>(*gpu, n),
                   mean2 = poisoned<double>(*gpu, rows), rstd2 = poisoned<double>(*gpu, rows);
      DeviceBuffer dropped = upload(*gpu, x), mask = poisoned<float>(*gpu, n);
      if (p > 0) {
        gpu->dropout_mask(DType::f32, mask.get(), static_cast<int64_t>(n), seed, offset, p);
        gpu->binary(kernels::BinaryOp::mul, DType::f32, dropped.get(), flat, dx.get(), flat,
                    mask.get(), flat);
      }
      gpu->binary(kernels::BinaryOp::add, DType::f32, sum2.get(), flat, dropped.get(), flat,
                  dr.get(), flat);
      gpu->layernorm_forward(DType::f32, rows, cols, sum2.get(), dg.get(), db.get(), 1e-5, y2.get(),
                             mean2.as<double>(), rstd2.as<double>());
      EXPECT_EQ(download<float>(*gpu, sum, n), download<float>(*gpu, sum2, n));
      EXPECT_EQ(download<float>(*gpu, y, n), download<float>(*gpu, y2, n));
      EXPECT_EQ(download<double>(*gpu, mean, rows), download<double>(*gpu, mean2, rows));
      EXPECT_EQ(download<double>(*gpu, rstd, rows), download<double>(*gpu, rstd2, rows));
      std::vector<float> want_sum(n), want_y(n);
      std::vector<double> want_mean(rows), want_rstd(rows);
      kernels::cpu_backend().add_layernorm_forward(
          DType::f32, rows, cols, x.data(), r.data(), gamma.data(), beta.data(), 1e-5,
          want_sum.data(), want_y.data(), want_mean.data(), want_rstd.data(), p, seed, offset);
      EXPECT_EQ(download<float>(*gpu, sum, n), want_sum);  // one IEEE product and add each
      EXPECT_LE(rel_error(download<float>(*gpu, y, n), want_y), 1e-5);
      size_t changed = 0;  // elements the dropout zeroed or scaled
      for (size_t i = 0; i < n; ++i) changed += want_sum[i] != x[i] + r[i];
      if (p > 0)
        EXPECT_GT(changed, n / 4);
      else
        EXPECT_EQ(changed, 0u);
    }
  }
}

// RMS norm (forward, dx, dgamma accumulated onto a non-zero start) and the rotary embedding
// (forward and inverse, in place and not, large positions) against the CPU backend on odd sizes,
// poisoned outputs.
TEST(CudaBackend, RmsNormAndRopeMatchCpu) {
  LETHE_REQUIRE_CUDA(gpu);
  Backend& cpu = kernels::cpu_backend();
  for (int64_t cols : {int64_t{1}, int64_t{33}, int64_t{1023}, int64_t{4097}}) {
    SCOPED_TRACE("rms cols " + std::to_string(cols));
    const int64_t rows = 37;
    const size_t n = static_cast<size_t>(rows * cols);
    const std::vector<float> x = random_as<float>(n, 31, -3, 3),
                             dy = random_as<float>(n, 32, -1, 1),
                             gamma = random_as<float>(cols, 33, 0.5, 1.5);
    std::vector<float> y(n), dx(n), dgamma(cols, 0.25f);
    std::vector<double> rstd(rows);
    cpu.rmsnorm_forward(DType::f32, rows, cols, x.data(), gamma.data(), 1e-6, y.data(),
                        rstd.data());
    cpu.rmsnorm_backward(DType::f32, rows, cols, x.data(), gamma.data(), rstd.data(), dy.data(),
                         dx.data(), dgamma.data());
    DeviceBuffer gx = upload(*gpu, x), gdy = upload(*gpu, dy), gg = upload(*gpu, gamma),
                 gy = poisoned<float>(*gpu, n), gdx = poisoned<float>(*gpu, n),
                 grstd = poisoned<double>(*gpu, rows),
                 gdg = upload(*gpu, std::vector<float>(cols, 0.25f));
    gpu->rmsnorm_forward(DType::f32, rows, cols, gx.get(), gg.get(), 1e-6, gy.get(),
                         grstd.as<double>());
    gpu->rmsnorm_backward(DType::f32, rows, cols, gx.get(), gg.get(), grstd.as<double>(), gdy.get(),
                          gdx.get(), gdg.get());
    EXPECT_LE(rel_error(download<float>(*gpu, gy, n), y), 1e-5);
    EXPECT_LE(rel_error(download<double>(*gpu, grstd, rows), rstd), 1e-5);
    EXPECT_LE(rel_error(download<float>(*gpu, gdx, n), dx), 1e-5);
    EXPECT_LE(rel_error(download<float>(*gpu, gdg, cols), dgamma), 1e-5);
  }
  const int64_t B = 2, H = 3, T = 37, D = 128;
  const size_t n = static_cast<size_t>(B * H * T * D);
  const std::vector<float> x = random_as<float>(n, 34, -2, 2);
  std::vector<int64_t> pos(static_cast<size_t>(B * T));
  for (size_t i = 0; i < pos.size(); ++i) pos[i] = static_cast<int64_t>(i * i * 97);  // to 5e5
  std::vector<float> freq(D / 2);
  for (int64_t i = 0; i < D / 2; ++i)
    freq[i] = static_cast<float>(std::pow(500000.0, -2.0 * static_cast<double>(i) / D));
  DeviceBuffer gpos = upload(*gpu, pos), gfreq = upload(*gpu, freq);
  for (bool inverse : {false, true}) {
    for (bool in_place : {false, true}) {
      SCOPED_TRACE(std::string("rope") + (inverse ? " inverse" : "") +
                   (in_place ? " in place" : ""));
      kernels::RopeArgs a;
      a.batch = B;
      a.heads = H;
      a.seq = T;
      a.head_dim = D;
      a.attention_scaling = 1.25;
      a.inverse = inverse;
      std::vector<float> want(n);
      a.x = x.data();
      a.y = want.data();
      a.positions = pos.data();
      a.inv_freq = freq.data();
      cpu.rope(a);
      DeviceBuffer gx = upload(*gpu, x), gy = poisoned<float>(*gpu, n);
      a.x = gx.get();
      a.y = in_place ? gx.get() : gy.get();
      a.positions = gpos.as<int64_t>();
      a.inv_freq = gfreq.as<float>();
      gpu->rope(a);
      EXPECT_LE(rel_error(download<float>(*gpu, in_place ? gx : gy, n), want), 1e-5);
    }
  }
}

TEST(CudaBackend, SoftmaxAndLayernormMatchCpu) {
  LETHE_REQUIRE_CUDA(gpu);
  Backend& cpu = kernels::cpu_backend();
  struct RC {
    int64_t rows, cols;
  } shapes[] = {{1, 1}, {7, 13}, {3, 1023}, {2, 4097}, {100, 7}};
  for (const RC& s : shapes) {
    size_t n = static_cast<size_t>(s.rows * s.cols), rows = static_cast<size_t>(s.rows);
    std::vector<float> x = random_as<float>(n, 1, -3, 3), dy = random_as<float>(n, 2, -1, 1);
    std::vector<float> gamma = random_as<float>(static_cast<size_t>(s.cols), 3, 0.5, 1.5);
    std::vector<float> beta = random_as<float>(static_cast<size_t>(s.cols), 4, -1, 1);
    DeviceBuffer dx = upload(*gpu, x), ddy = upload(*gpu, dy), dg = upload(*gpu, gamma),
                 db = upload(*gpu, beta);
    for (bool log : {false, true}) {
      std::vector<float> y(n), dxs(n);
      cpu.softmax_forward(DType::f32, s.rows, s.cols, x.data(), y.data(), log);
      cpu.softmax_backward(DType::f32, s.rows, s.cols, y.data(), dy.data(), dxs.data(), log);
      DeviceBuffer gy = poisoned<float>(*gpu, n), gdx = poisoned<float>(*gpu, n);
      gpu->softmax_forward(DType::f32, s.rows, s.cols, dx.get(), gy.get(), log);
      gpu->softmax_backward(DType::f32, s.rows, s.cols, gy.get(), ddy.get(), gdx.get(), log);
      EXPECT_LE(rel_error(download<float>(*gpu, gy, n), y), 1e-5) << "softmax log=" << log;
      EXPECT_LE(rel_error(download<float>(*gpu, gdx, n), dxs), 1e-5) << "softmax bwd log=" << log;
    }
    std::vector<float> y(n), ldx(n);
    std::vector<double> mean(rows), rstd(rows);
    std::vector<float> dgamma(static_cast<size_t>(s.cols), 0.25f), dbeta(dgamma);
    cpu.layernorm_forward(DType::f32, s.rows, s.cols, x.data(), gamma.data(), beta.data(), 1e-5,
                          y.data(), mean.data(), rstd.data());
    cpu.layernorm_backward(DType::f32, s.rows, s.cols, x.data(), gamma.data(), mean.data(),
                           rstd.data(), dy.data(), ldx.data(), dgamma.data(), dbeta.data());
    DeviceBuffer gy = poisoned<float>(*gpu, n), gmean = poisoned<double>(*gpu, rows),
                 grstd = poisoned<double>(*gpu, rows), gdx = poisoned<float>(*gpu, n);
    DeviceBuffer gdgamma = upload(*gpu, std::vector<float>(static_cast<size_t>(s.cols), 0.25f));
    DeviceBuffer gdbeta = upload(*gpu, std::vector<float>(static_cast<size_t>(s.cols), 0.25f));
    gpu->layernorm_forward(DType::f32, s.rows, s.cols, dx.get(), dg.get(), db.get(), 1e-5, gy.get(),
                           gmean.as<double>(), grstd.as<double>());
    gpu->layernorm_backward(DType::f32, s.rows, s.cols, dx.get(), dg.get(), gmean.as<double>(),
                            grstd.as<double>(), ddy.get(), gdx.get(), gdgamma.get(), gdbeta.get());
    std::string what = std::to_string(s.rows) + "x" + std::to_string(s.cols);
    EXPECT_LE(rel_error(download<float>(*gpu, gy, n), y), 1e-5) << "layernorm " << what;
    // The mean of a row of values in [-3, 3] is near 0, and both backends sum x - x[0] in f32: an
    // absolute error of a few 1e-7 is each one's rounding, so it is judged on the data's scale.
    std::vector<double> gm = download<double>(*gpu, gmean, rows);
    for (size_t r = 0; r < rows; ++r)
      EXPECT_LE(std::fabs(gm[r] - mean[r]), 1e-6 * 3) << what << " row " << r;
    EXPECT_LE(rel_error(download<double>(*gpu, grstd, rows), rstd), 1e-5) << what;
    if (s.cols > 1) {
      EXPECT_LE(rel_error(download<float>(*gpu, gdx, n), ldx), 1e-4) << what;
    }
    EXPECT_LE(rel_error(download<float>(*gpu, gdgamma, gamma.size()), dgamma), 1e-5) << what;
    EXPECT_LE(rel_error(download<float>(*gpu, gdbeta, beta.size()), dbeta), 1e-5) << what;
  }
}

// f32 cross-entropy arguments (unlikelihood c = 0.5) over the given buffers.
kernels::CrossEntropyArgs ce_args(int64_t rows, int64_t vocab, kernels::CrossEntropyMode mode,
                                  const float* logits, const int64_t* targets, const float* weights,
                                  float* loss, float* lse) {
  kernels::CrossEntropyArgs a;
  a.dtype = DType::f32;
  a.rows = rows;
  a.vocab = vocab;
  a.mode = mode;
  a.c = 0.5;
  a.logits = logits;
  a.targets = targets;
  a.weights = weights;
  a.loss = loss;
  a.lse = lse;
  return a;
}

TEST(CudaBackend, CrossEntropyAndKlMatchCpu) {
  LETHE_REQUIRE_CUDA(gpu);
  Backend& cpu = kernels::cpu_backend();
  struct RV {
    int64_t rows, vocab;
  } shapes[] = {{1, 7}, {7, 1023}, {3, 4097}, {65, 50}};
  for (const RV& s : shapes) {
    size_t n = static_cast<size_t>(s.rows * s.vocab), rows = static_cast<size_t>(s.rows);
    std::vector<float> logits = random_as<float>(n, 5, -4, 4), ref = random_as<float>(n, 6, -4, 4);
    std::vector<float> weights = random_as<float>(rows, 7, -1, 2),
                       dloss = random_as<float>(rows, 8, -1, 1);
    std::vector<int64_t> targets(rows);
    for (size_t r = 0; r < rows; ++r)
      targets[r] = r % 5 == 3 ? -100 : static_cast<int64_t>((r * 7919) % s.vocab);
    DeviceBuffer dlog = upload(*gpu, logits), dref = upload(*gpu, ref), dw = upload(*gpu, weights),
                 ddl = upload(*gpu, dloss), dt = upload(*gpu, targets);
    for (auto mode : {kernels::CrossEntropyMode::nll, kernels::CrossEntropyMode::unlikelihood}) {
      for (bool weighted : {false, true}) {
        std::vector<float> loss(rows), lse(rows), dl(n);
        kernels::CrossEntropyArgs a =
            ce_args(s.rows, s.vocab, mode, logits.data(), targets.data(),
                    weighted ? weights.data() : nullptr, loss.data(), lse.data());
        cpu.cross_entropy_forward(a);
        kernels::CrossEntropyBackwardArgs b{a, dloss.data(), dl.data()};
        cpu.cross_entropy_backward(b);

        DeviceBuffer gloss = poisoned<float>(*gpu, rows), glse = poisoned<float>(*gpu, rows),
                     gdl = poisoned<float>(*gpu, n);
        a.logits = dlog.get();
        a.targets = dt.as<int64_t>();
        a.weights = weighted ? dw.as<float>() : nullptr;
        a.loss = gloss.get();
        a.lse = glse.as<float>();
        gpu->cross_entropy_forward(a);
        kernels::CrossEntropyBackwardArgs gb{a, ddl.get(), gdl.get()};
        gpu->cross_entropy_backward(gb);
        std::string what = std::to_string(s.rows) + "x" + std::to_string(s.vocab) + " mode " +
                           std::to_string(int(mode)) + " weighted " + std::to_string(weighted);
        EXPECT_LE(rel_error(download<float>(*gpu, gloss, rows), loss), 1e-5) << what;
        EXPECT_LE(rel_error(download<float>(*gpu, gdl, n), dl), 1e-5) << what;
      }
    }
    std::vector<float> kl(rows), dx(n), dr(n);
    cpu.kl_div_forward(DType::f32, s.rows, s.vocab, ref.data(), logits.data(), kl.data());
    cpu.kl_div_backward(DType::f32, s.rows, s.vocab, ref.data(), logits.data(), dloss.data(),
                        dx.data(), dr.data());
    DeviceBuffer gkl = poisoned<float>(*gpu, rows), gdx = poisoned<float>(*gpu, n),
                 gdr = poisoned<float>(*gpu, n);
    gpu->kl_div_forward(DType::f32, s.rows, s.vocab, dref.get(), dlog.get(), gkl.get());
    gpu->kl_div_backward(DType::f32, s.rows, s.vocab, dref.get(), dlog.get(), ddl.get(), gdx.get(),
                         gdr.get());
    EXPECT_LE(rel_error(download<float>(*gpu, gkl, rows), kl), 1e-5) << "kl";
    EXPECT_LE(rel_error(download<float>(*gpu, gdx, n), dx), 1e-5) << "kl dlogits";
    EXPECT_LE(rel_error(download<float>(*gpu, gdr, n), dr), 1e-5) << "kl dref";
  }
}

// cross_entropy_fused (the fused head's chunk: loss, lse and dlogits in one pass per row, the row
// cached in shared memory when it fits) against the CPU's forward then backward: odd vocabularies,
// one wider than shared memory (read from global memory), signed per-token weights, ignored rows,
// −inf logits, in place (dlogits over the logits, as the head runs it) and out of place, nll and
// unlikelihood (the latter runs the two kernels); poisoned outputs.
TEST(CudaBackend, FusedCrossEntropyIsForwardThenBackward) {
  LETHE_REQUIRE_CUDA(gpu);
  Backend& cpu = kernels::cpu_backend();
  struct RV {
    int64_t rows, vocab;
  } shapes[] = {{1, 7}, {7, 1023}, {3, 4097}, {65, 50}, {2, 60000}};
  for (const RV& s : shapes) {
    const size_t n = static_cast<size_t>(s.rows * s.vocab), rows = static_cast<size_t>(s.rows);
    std::vector<float> logits = random_as<float>(n, 15, -4, 4);
    for (size_t j = 1; j < static_cast<size_t>(s.vocab); j += 3) logits[j] = -INFINITY;  // row 0
    const std::vector<float> weights = random_as<float>(rows, 17, -1, 2),
                             dloss = random_as<float>(rows, 18, -1, 1);
    std::vector<int64_t> targets(rows);
    for (size_t r = 0; r < rows; ++r)
      targets[r] = r % 5 == 3 ? -100 : static_cast<int64_t>((r * 7919) % s.vocab);
    targets[0] = 0;  // a finite logit of row 0
    DeviceBuffer ddl = upload(*gpu, dloss), dw = upload(*gpu, weights), dt = upload(*gpu, targets);
    for (auto mode : {kernels::CrossEntropyMode::nll, kernels::CrossEntropyMode::unlikelihood}) {
      for (bool in_place : {true, false}) {
        const std::string what = std::to_string(s.rows) + "x" + std::to_string(s.vocab) +
                                 (mode == kernels::CrossEntropyMode::nll ? " nll" : " ul") +
                                 (in_place ? " in place" : "");
        std::vector<float> loss(rows), lse(rows), dl(n);
        kernels::CrossEntropyArgs a = ce_args(s.rows, s.vocab, mode, logits.data(), targets.data(),
                                              weights.data(), loss.data(), lse.data());
        cpu.cross_entropy_fused({a, dloss.data(), dl.data()});

        DeviceBuffer dlog = upload(*gpu, logits), gloss = poisoned<float>(*gpu, rows),
                     glse = poisoned<float>(*gpu, rows), gdl = poisoned<float>(*gpu, n);
        a.logits = dlog.get();
        a.targets = dt.as<int64_t>();
        a.weights = dw.as<float>();
        a.loss = gloss.get();
        a.lse = glse.as<float>();
        gpu->cross_entropy_fused({a, ddl.get(), in_place ? dlog.get() : gdl.get()});
        EXPECT_LE(rel_error(download<float>(*gpu, gloss, rows), loss), 1e-5) << what;
        EXPECT_LE(rel_error(download<float>(*gpu, glse, rows), lse), 1e-5) << what;
        EXPECT_LE(rel_error(download<float>(*gpu, in_place ? dlog : gdl, n), dl), 1e-5) << what;
      }
    }
  }
}

TEST(CudaBackend, EmbeddingMatchesCpu) {
  LETHE_REQUIRE_CUDA(gpu);
  Backend& cpu = kernels::cpu_backend();
  const int64_t rows = 11, dim = 1023, n = 37;
  std::vector<float> table = random_as<float>(rows * dim, 1, -1, 1);
  std::vector<float> dout = random_as<float>(n * dim, 2, -1, 1);
  std::vector<int64_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = (i * 5) % rows;  // repeats: the scatter must add
  std::vector<float> out(n * dim), dtable(rows * dim, 0.5f);
  cpu.embedding_forward(DType::f32, n, dim, ids.data(), table.data(), out.data());
  cpu.embedding_backward(DType::f32, n, dim, ids.data(), dout.data(), dtable.data(), 1);
  DeviceBuffer dt = upload(*gpu, table), dd = upload(*gpu, dout), di = upload(*gpu, ids);
  DeviceBuffer gout = poisoned<float>(*gpu, out.size());
  DeviceBuffer gdt = upload(*gpu, std::vector<float>(rows * dim, 0.5f));
  gpu->embedding_forward(DType::f32, n, dim, di.as<int64_t>(), dt.get(), gout.get());
  gpu->embedding_backward(DType::f32, n, dim, di.as<int64_t>(), dd.get(), gdt.get(), 1);
  EXPECT_EQ(download<float>(*gpu, gout, out.size()), out);
  EXPECT_LE(rel_error(download<float>(*gpu, gdt, dtable.size()), dtable), 1e-6);
}

// The flash kernels' outputs of one attention case, run on the device (flash or, with `simple`,
// the per-row reference kernels) from host inputs.
struct AttentionResult {
  std::vector<double> out, lse, dq, dk, dv;
};

template <typename T>
AttentionResult run_attention(Backend& be, kernels::AttentionArgs a, const std::vector<T>& q,
                              const std::vector<T>& k, const std::vector<T>& v,
                              const std::vector<T>& dout, const std::vector<int64_t>& mask,
                              bool backward) {
  const size_t nq = q.size(), nk = k.size(),
               rows = static_cast<size_t>(a.batch * a.heads * a.q_len);
  const bool host = std::string(be.name()) == "cpu";
  auto as_double = [](const std::vector<T>& x) { return std::vector<double>(x.begin(), x.end()); };
  AttentionResult r;
  if (host) {
    std::vector<T> out(nq), dq(nq), dk(nk), dv(nk);
    std::vector<float> lse(rows);
    a.q = q.data();
    a.k = k.data();
    a.v = v.data();
    a.key_mask = a.key_mask ? mask.data() : nullptr;
    a.out = out.data();
    a.lse = lse.data();
    be.attention_forward(a);
    if (backward) be.attention_backward({a, dout.data(), dq.data(), dk.data(), dv.data()});
    r = {as_double(out), std::vector<double>(lse.begin(), lse.end()), as_double(dq), as_double(dk),
         as_double(dv)};
    return r;
  }
  DeviceBuffer gq = upload(be, q), gk = upload(be, k), gv = upload(be, v), gdo = upload(be, dout),
               gm = upload(be, mask.empty() ? std::vector<int64_t>{0} : mask);
  DeviceBuffer gout = poisoned<T>(be, nq), glse = poisoned<float>(be, rows),
               gdq = poisoned<T>(be, nq), gdk = poisoned<T>(be, nk), gdv = poisoned<T>(be, nk);
  a.q = gq.get();
  a.k = gk.get();
  a.v = gv.get();
  a.key_mask = a.key_mask ? gm.as<int64_t>() : nullptr;
  a.out = gout.get();
  a.lse = glse.as<float>();
  be.attention_forward(a);
  if (backward) be.attention_backward({a, gdo.get(), gdq.get(), gdk.get(), gdv.get()});
  const std::vector<float> lse = download<float>(be, glse, rows);
  r.out = as_double(download<T>(be, gout, nq));
  r.lse = std::vector<double>(lse.begin(), lse.end());
  if (backward) {
    r.dq = as_double(download<T>(be, gdq, nq));
    r.dk = as_double(download<T>(be, gdk, nk));
    r.dv = as_double(download<T>(be, gdv, nk));
  }
  return r;
}

// Largest |got − want| over the largest |want| (−inf entries must match exactly; a NaN fails).
double max_rel_error(const std::vector<double>& got, const std::vector<double>& want) {
  if (got.size() != want.size()) return INFINITY;
  double worst = 0, scale = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::isinf(want[i]) || std::isinf(got[i])) {
      if (got[i] != want[i]) return INFINITY;
      continue;
    }
    if (std::isnan(got[i]) || std::isnan(want[i])) return NAN;
    worst = nan_max(worst, std::fabs(got[i] - want[i]));
    scale = std::max(scale, std::fabs(want[i]));
  }
  return scale > 0 ? worst / scale : worst;
}

// Every output of `got` within `tol` of `want` (max_rel_error), named by `who`.
void expect_attention_close(const AttentionResult& got, const AttentionResult& want, double tol,
                            const char* who) {
  EXPECT_LE(max_rel_error(got.out, want.out), tol) << who << " out";
  EXPECT_LE(max_rel_error(got.lse, want.lse), tol) << who << " lse";
  EXPECT_LE(max_rel_error(got.dq, want.dq), tol) << who << " dq";
  EXPECT_LE(max_rel_error(got.dk, want.dk), tol) << who << " dk";
  EXPECT_LE(max_rel_error(got.dv, want.dv), tol) << who << " dv";
}

// Attention arguments for the given sizes, scaled by 1/√d (no pointers, no mask).
kernels::AttentionArgs attention_args(int64_t b, int64_t h, int64_t tq, int64_t tk, int64_t d,
                                      bool causal, bool f64) {
  kernels::AttentionArgs a;
  a.dtype = f64 ? DType::f64 : DType::f32;
  a.batch = b;
  a.heads = h;
  a.q_len = tq;
  a.kv_len = tk;
  a.head_dim = d;
  a.causal = causal;
  a.scale = 1.0 / std::sqrt(static_cast<double>(d));
  return a;
}

// n values uniform in [-2, 2) as T, seeded.
template <typename T>
std::vector<T> random_typed(size_t n, uint64_t seed) {
  const std::vector<double> v = random_values(n, seed, -2, 2);
  return std::vector<T>(v.begin(), v.end());
}

TEST(CudaBackend, AttentionMatchesCpu) {
  LETHE_REQUIRE_CUDA(gpu);
  Backend& cpu = kernels::cpu_backend();
  struct Dims {
    int64_t b, h, tq, tk, d;
    bool causal, mask;
  } dims[] = {{1, 1, 1, 1, 1, true, false},
              {2, 3, 7, 7, 16, true, true},
              {1, 2, 5, 9, 33, true, false},
              {2, 1, 13, 13, 64, false, true},
              {1, 1, 130, 130, 8, true, true}};
  for (const Dims& d : dims) {
    size_t nq = static_cast<size_t>(d.b * d.h * d.tq * d.d),
           nk = static_cast<size_t>(d.b * d.h * d.tk * d.d);
    std::vector<float> q = random_as<float>(nq, 1, -1, 1), k = random_as<float>(nk, 2, -1, 1),
                       v = random_as<float>(nk, 3, -1, 1), dout = random_as<float>(nq, 4, -1, 1);
    std::vector<int64_t> mask(static_cast<size_t>(d.b * d.tk), 1);
    for (size_t j = 0; j < mask.size(); ++j)
      if (j % 4 == 1) mask[j] = 0;  // key 0 stays visible in every batch
    kernels::AttentionArgs a;
    a.dtype = DType::f32;
    a.batch = d.b;
    a.heads = d.h;
    a.q_len = d.tq;
    a.kv_len = d.tk;
    a.head_dim = d.d;
    a.causal = d.causal;
    a.scale = 0.7;
    a.key_mask = d.mask ? mask.data() : nullptr;  // non-null: "use the mask"
    const AttentionResult want = run_attention<float>(cpu, a, q, k, v, dout, mask, true);
    const AttentionResult got = run_attention<float>(*gpu, a, q, k, v, dout, mask, true);
    std::string what = "b" + std::to_string(d.b) + " h" + std::to_string(d.h) + " tq" +
                       std::to_string(d.tq) + " tk" + std::to_string(d.tk) + " d" +
                       std::to_string(d.d);
    EXPECT_LE(rel_error(got.out, want.out), 1e-5) << what;
    EXPECT_LE(rel_error(got.lse, want.lse), 1e-5) << what;
    EXPECT_LE(rel_error(got.dq, want.dq), 1e-5) << what;
    EXPECT_LE(rel_error(got.dk, want.dk), 1e-5) << what;
    EXPECT_LE(rel_error(got.dv, want.dv), 1e-5) << what;
  }
}

// The tiled flash kernels (flash_attention.cu) against the CPU backend and against the simple
// CUDA kernels, on shapes that span several 32-query and 32-key tiles with partial last tiles:
// head dims 64, 80 and 128 (OPT-125m…1.3b, OPT-2.7b, Llama) and odd ones; Tq < Tk (a chunk after
// a KV cache) and Tq > Tk under the causal mask (the first queries see no key: zero output,
// lse −inf, zero gradients); key-padding masks, one batch with every key masked; f32 and f64;
// poisoned outputs.
TEST(CudaFlashAttention, MatchesCpuAndTheSimpleKernels) {
  LETHE_REQUIRE_CUDA(gpu);
  Backend& cpu = kernels::cpu_backend();
  struct Case {
    int64_t b, h, tq, tk, d;
    bool causal, mask, f64;
  } cases[] = {{1, 1, 33, 33, 64, true, false, false},  {2, 2, 45, 70, 80, true, true, false},
               {1, 2, 70, 45, 128, true, false, false}, {2, 1, 65, 97, 7, false, true, false},
               {1, 1, 1, 100, 33, true, true, false},   {2, 1, 40, 40, 16, false, true, true},
               {1, 1, 37, 37, 128, true, true, true}};
  for (const Case& c : cases) {
    const std::string what = "b" + std::to_string(c.b) + " h" + std::to_string(c.h) + " tq" +
                             std::to_string(c.tq) + " tk" + std::to_string(c.tk) + " d" +
                             std::to_string(c.d) + (c.causal ? " causal" : "") +
                             (c.mask ? " mask" : "") + (c.f64 ? " f64" : " f32");
    SCOPED_TRACE(what);
    const size_t nq = static_cast<size_t>(c.b * c.h * c.tq * c.d),
                 nk = static_cast<size_t>(c.b * c.h * c.tk * c.d);
    std::vector<int64_t> mask(static_cast<size_t>(c.b * c.tk), 1);
    for (size_t j = 0; j < mask.size(); ++j)
      if (j % 3 == 1) mask[j] = 0;
    if (c.b > 1 && c.mask)
      for (int64_t j = 0; j < c.tk; ++j) mask[static_cast<size_t>(c.tk + j)] = 0;  // batch 1
    kernels::AttentionArgs a = attention_args(c.b, c.h, c.tq, c.tk, c.d, c.causal, c.f64);
    a.key_mask = c.mask ? mask.data() : nullptr;  // non-null: "use the mask"
    auto check = [&](auto tag) {
      using T = decltype(tag);
      const std::vector<T> q = random_typed<T>(nq, 1), k = random_typed<T>(nk, 2),
                           v = random_typed<T>(nk, 3), dout = random_typed<T>(nq, 4);
      const AttentionResult want = run_attention<T>(cpu, a, q, k, v, dout, mask, true);
      kernels::cuda_set_simple_attention(true);
      const AttentionResult simple = run_attention<T>(*gpu, a, q, k, v, dout, mask, true);
      kernels::cuda_set_simple_attention(false);
      const AttentionResult flash = run_attention<T>(*gpu, a, q, k, v, dout, mask, true);
      const double tol = c.f64 ? 1e-12 : 1e-5;
      expect_attention_close(flash, want, tol, "flash vs cpu");
      expect_attention_close(simple, want, tol, "simple vs cpu");
      EXPECT_LE(max_rel_error(flash.out, simple.out), tol) << "flash vs simple out";
      EXPECT_LE(max_rel_error(flash.dq, simple.dq), tol) << "flash vs simple dq";
      EXPECT_LE(max_rel_error(flash.dk, simple.dk), tol) << "flash vs simple dk";
      // The case is what it claims: rows that see no key exist where they should.
      size_t empty = 0;
      for (double x : want.lse) empty += std::isinf(x);
      EXPECT_EQ(empty > 0, (c.causal && c.tq > c.tk) || (c.mask && c.b > 1)) << empty;
    };
    if (c.f64)
      check(double{});
    else
      check(float{});
  }
}

// The forward reads k and v in place from a preallocated KV cache (kv_stride: the (b, h)
// matrices `capacity` rows apart, only the first kv_len filled): the same as contiguous k and v.
TEST(CudaFlashAttention, ReadsAKvCacheInPlace) {
  LETHE_REQUIRE_CUDA(gpu);
  const int64_t B = 2, H = 2, Tq = 3, Tk = 41, cap = 64, D = 64;
  kernels::AttentionArgs a;
  a.batch = B;
  a.heads = H;
  a.q_len = Tq;
  a.kv_len = Tk;
  a.head_dim = D;
  a.scale = 0.125;
  const std::vector<double> qd = random_values(B * H * Tq * D, 5, -2, 2);
  const std::vector<double> kd = random_values(B * H * Tk * D, 6, -2, 2);
  const std::vector<double> vd = random_values(B * H * Tk * D, 7, -2, 2);
  const std::vector<float> q(qd.begin(), qd.end()), k(kd.begin(), kd.end()),
      v(vd.begin(), vd.end());
  std::vector<float> kc(B * H * cap * D, NAN), vc(B * H * cap * D, NAN);  // unfilled rows: NaN
  for (int64_t m = 0; m < B * H; ++m)
    for (int64_t e = 0; e < Tk * D; ++e) {
      kc[m * cap * D + e] = k[m * Tk * D + e];
      vc[m * cap * D + e] = v[m * Tk * D + e];
    }
  const std::vector<int64_t> no_mask;
  const AttentionResult want =
      run_attention<float>(kernels::cpu_backend(), a, q, k, v, q, no_mask, false);
  a.kv_stride = cap * D;
  const AttentionResult got = run_attention<float>(*gpu, a, q, kc, vc, q, no_mask, false);
  EXPECT_LE(max_rel_error(got.out, want.out), 1e-5);
  EXPECT_LE(max_rel_error(got.lse, want.lse), 1e-5);
}

// bf16 compute (AttentionArgs::compute = bf16: model.dtype bf16): the forward's q·kᵀ and p·v on
// tensor cores through WMMA (the emulator runs the warp-level fragments), f32 softmax statistics;
// the backward's five tile products too. Within bf16 rounding (1e-2) of the CPU's f32 result,
// and not equal to the f32 kernels' (the tensor-core paths ran); head dims 64, 80, 128 and a
// causal chunk after a KV cache. A head dim that is not a multiple of 16 runs the f32 kernels.
TEST(CudaFlashAttention, Bf16TensorCoresWithinBf16Rounding) {
  LETHE_REQUIRE_CUDA(gpu);
  Backend& cpu = kernels::cpu_backend();
  struct Case {
    int64_t b, h, tq, tk, d;
    bool causal;
  } cases[] = {{1, 2, 45, 70, 64, true},
               {2, 1, 33, 33, 80, true},
               {1, 1, 40, 29, 128, false},
               {1, 1, 20, 20, 7, true}};
  for (const Case& c : cases) {
    SCOPED_TRACE("d" + std::to_string(c.d) + " tq" + std::to_string(c.tq) + " tk" +
                 std::to_string(c.tk));
    const size_t nq = static_cast<size_t>(c.b * c.h * c.tq * c.d),
                 nk = static_cast<size_t>(c.b * c.h * c.tk * c.d);
    auto rnd = [](size_t n, uint64_t seed) {
      const std::vector<double> v = random_values(n, seed, -2, 2);
      return std::vector<float>(v.begin(), v.end());
    };
    const std::vector<float> q = rnd(nq, 11), k = rnd(nk, 12), v = rnd(nk, 13), dout = rnd(nq, 14);
    std::vector<int64_t> mask(static_cast<size_t>(c.b * c.tk), 1);
    for (size_t j = 0; j < mask.size(); j += 5) mask[j] = 0;
    kernels::AttentionArgs a;
    a.batch = c.b;
    a.heads = c.h;
    a.q_len = c.tq;
    a.kv_len = c.tk;
    a.head_dim = c.d;
    a.causal = c.causal;
    a.scale = 1.0 / std::sqrt(static_cast<double>(c.d));
    a.key_mask = mask.data();
    const AttentionResult want = run_attention<float>(cpu, a, q, k, v, dout, mask, true);
    const AttentionResult f32 = run_attention<float>(*gpu, a, q, k, v, dout, mask, true);
    a.compute = kernels::GemmCompute::bf16;
    const AttentionResult bf16 = run_attention<float>(*gpu, a, q, k, v, dout, mask, true);
    EXPECT_LE(max_rel_error(bf16.out, want.out), 1e-2);
    EXPECT_LE(max_rel_error(bf16.lse, want.lse), 1e-2);
    EXPECT_LE(max_rel_error(bf16.dq, want.dq), 1e-2);
    EXPECT_LE(max_rel_error(bf16.dk, want.dk), 1e-2);
    EXPECT_LE(max_rel_error(bf16.dv, want.dv), 1e-2);
    if (c.d % 16 == 0) {
      EXPECT_GT(max_rel_error(bf16.out, f32.out), 1e-5) << "the bf16 forward did not run";
      EXPECT_GT(max_rel_error(bf16.dq, f32.dq), 1e-5) << "the bf16 dq kernel did not run";
      EXPECT_GT(max_rel_error(bf16.dk, f32.dk), 1e-5) << "the bf16 dk/dv kernel did not run";
    } else {
      EXPECT_EQ(bf16.out, f32.out) << "a head dim of " << c.d << " runs the f32 kernels";
      EXPECT_EQ(bf16.dq, f32.dq);
    }
  }
}

// Dropout on the probabilities (AttentionArgs::dropout): the flash kernels, the simple kernels and
// the bf16 tensor-core kernels draw the CPU's mask element for element in forward and backward
// (several tiles, partial last tiles, Tq ≠ Tk, key padding, f32 and f64, an offset counter);
// and the mask is not the identity (the output differs from no dropout).
TEST(CudaFlashAttention, DropoutDrawsTheCpusMask) {
  LETHE_REQUIRE_CUDA(gpu);
  Backend& cpu = kernels::cpu_backend();
  struct Case {
    int64_t b, h, tq, tk, d;
    bool causal, f64;
    double p;
  } cases[] = {{2, 2, 45, 70, 64, true, false, 0.1},
               {1, 1, 37, 37, 16, false, true, 0.5},
               {1, 2, 20, 33, 7, true, false, 0.3}};
  for (const Case& c : cases) {
    SCOPED_TRACE("d" + std::to_string(c.d) + " tq" + std::to_string(c.tq) + " tk" +
                 std::to_string(c.tk) + " p" + std::to_string(c.p));
    const size_t nq = static_cast<size_t>(c.b * c.h * c.tq * c.d),
                 nk = static_cast<size_t>(c.b * c.h * c.tk * c.d);
    std::vector<int64_t> mask(static_cast<size_t>(c.b * c.tk), 1);
    for (size_t j = 0; j < mask.size(); ++j)
      if (j % 4 == 1) mask[j] = 0;
    kernels::AttentionArgs a = attention_args(c.b, c.h, c.tq, c.tk, c.d, c.causal, c.f64);
    a.key_mask = mask.data();
    auto check = [&](auto tag) {
      using T = decltype(tag);
      const std::vector<T> q = random_typed<T>(nq, 21), k = random_typed<T>(nk, 22),
                           v = random_typed<T>(nk, 23), dout = random_typed<T>(nq, 24);
      const AttentionResult plain = run_attention<T>(cpu, a, q, k, v, dout, mask, true);
      kernels::AttentionArgs ad = a;
      ad.dropout = c.p;
      ad.dropout_seed = 99;
      ad.dropout_offset = 12345;
      const AttentionResult want = run_attention<T>(cpu, ad, q, k, v, dout, mask, true);
      EXPECT_GT(max_rel_error(want.out, plain.out), 1e-3) << "dropout changed nothing";
      EXPECT_EQ(want.lse, plain.lse) << "lse is the undropped softmax's";
      kernels::cuda_set_simple_attention(true);
      const AttentionResult simple = run_attention<T>(*gpu, ad, q, k, v, dout, mask, true);
      kernels::cuda_set_simple_attention(false);
      const AttentionResult flash = run_attention<T>(*gpu, ad, q, k, v, dout, mask, true);
      const double tol = c.f64 ? 1e-12 : 1e-5;
      expect_attention_close(flash, want, tol, "flash vs cpu");
      expect_attention_close(simple, want, tol, "simple vs cpu");
      if constexpr (std::is_same_v<T, float>) {
        if (c.d % 16 == 0) {
          ad.compute = kernels::GemmCompute::bf16;
          const AttentionResult bf16 = run_attention<T>(*gpu, ad, q, k, v, dout, mask, true);
          EXPECT_LE(max_rel_error(bf16.out, want.out), 1e-2) << "bf16 out";
          EXPECT_LE(max_rel_error(bf16.dq, want.dq), 1e-2) << "bf16 dq";
          EXPECT_LE(max_rel_error(bf16.dk, want.dk), 1e-2) << "bf16 dk";
          EXPECT_LE(max_rel_error(bf16.dv, want.dv), 1e-2) << "bf16 dv";
        }
      }
    };
    if (c.f64)
      check(double{});
    else
      check(float{});
  }
}

// Grouped-query and multi-query attention (kv_heads < heads): the flash kernels (f32, f64, bf16
// tensor cores) and the simple kernels against the CPU, forward and backward (dk, dv summed over
// each group), with a causal chunk after a KV cache, key padding and dropout.
TEST(CudaFlashAttention, GroupedQueryAttentionMatchesCpu) {
  LETHE_REQUIRE_CUDA(gpu);
  Backend& cpu = kernels::cpu_backend();
  struct Case {
    int64_t b, h, kvh, tq, tk, d;
    bool f64;
    double p;
  } cases[] = {{2, 4, 2, 45, 70, 64, false, 0.0},
               {1, 6, 1, 33, 33, 128, false, 0.2},
               {2, 4, 2, 20, 37, 16, true, 0.1},
               {1, 3, 1, 9, 9, 7, false, 0.0}};
  for (const Case& c : cases) {
    SCOPED_TRACE("H " + std::to_string(c.h) + " KVH " + std::to_string(c.kvh) + " d " +
                 std::to_string(c.d) + (c.f64 ? " f64" : " f32") + " p " + std::to_string(c.p));
    const size_t nq = static_cast<size_t>(c.b * c.h * c.tq * c.d),
                 nk = static_cast<size_t>(c.b * c.kvh * c.tk * c.d);
    std::vector<int64_t> mask(static_cast<size_t>(c.b * c.tk), 1);
    for (size_t j = 0; j < mask.size(); ++j)
      if (j % 5 == 2) mask[j] = 0;
    kernels::AttentionArgs a = attention_args(c.b, c.h, c.tq, c.tk, c.d, true, c.f64);
    a.kv_heads = c.kvh;
    a.key_mask = mask.data();
    a.dropout = c.p;
    a.dropout_seed = 4;
    auto check = [&](auto tag) {
      using T = decltype(tag);
      const std::vector<T> q = random_typed<T>(nq, 41), k = random_typed<T>(nk, 42),
                           v = random_typed<T>(nk, 43), dout = random_typed<T>(nq, 44);
      const AttentionResult want = run_attention<T>(cpu, a, q, k, v, dout, mask, true);
      ASSERT_EQ(want.dk.size(), nk);
      kernels::cuda_set_simple_attention(true);
      const AttentionResult simple = run_attention<T>(*gpu, a, q, k, v, dout, mask, true);
      kernels::cuda_set_simple_attention(false);
      const AttentionResult flash = run_attention<T>(*gpu, a, q, k, v, dout, mask, true);
      const double tol = c.f64 ? 1e-12 : 1e-5;
      expect_attention_close(flash, want, tol, "flash vs cpu");
      expect_attention_close(simple, want, tol, "simple vs cpu");
      if constexpr (std::is_same_v<T, float>) {
        if (c.d % 16 == 0) {
          kernels::AttentionArgs ab = a;
          ab.compute = kernels::GemmCompute::bf16;
          expect_attention_close(run_attention<T>(*gpu, ab, q, k, v, dout, mask, true), want, 1e-2,
                                 "bf16 vs cpu");
        }
      }
    };
    if (c.f64)
      check(double{});
    else
      check(float{});
  }
}

TEST(CudaBackend, OptimizerStepsMatchCpu) {
  LETHE_REQUIRE_CUDA(gpu);
  Backend& cpu = kernels::cpu_backend();
  for (int64_t n : kSizes) {
    size_t sn = static_cast<size_t>(n);
    std::vector<float> p = random_as<float>(sn, 1, -1, 1), g = random_as<float>(sn, 2, -1, 1);
    std::vector<float> m = random_as<float>(sn, 3, -0.1, 0.1), v = random_as<float>(sn, 4, 0, 0.01);
    DeviceBuffer dp = upload(*gpu, p), dg = upload(*gpu, g), dm = upload(*gpu, m),
                 dv = upload(*gpu, v);
    cpu.adamw_step(n, p.data(), g.data(), m.data(), v.data(), 1e-3, 0.9, 0.999, 1e-8, 0.01, 0.19,
                   0.0297);
    gpu->adamw_step(n, dp.as<float>(), dg.as<float>(), dm.as<float>(), dv.as<float>(), 1e-3, 0.9,
                    0.999, 1e-8, 0.01, 0.19, 0.0297);
    // Same f32 operations in the same order without FMA contraction: bit-identical.
    EXPECT_EQ(download<float>(*gpu, dp, sn), p) << "adamw p n=" << n;
    EXPECT_EQ(download<float>(*gpu, dm, sn), m) << "adamw m n=" << n;
    EXPECT_EQ(download<float>(*gpu, dv, sn), v) << "adamw v n=" << n;
    for (bool nesterov : {false, true})
      for (bool first : {true, false}) {
        std::vector<float> buf = random_as<float>(sn, 5, -1, 1);
        DeviceBuffer db = upload(*gpu, buf);
        cpu.sgd_step(n, p.data(), g.data(), buf.data(), 0.1, 0.9, 0.1, 0.01, nesterov, first);
        gpu->sgd_step(n, dp.as<float>(), dg.as<float>(), db.as<float>(), 0.1, 0.9, 0.1, 0.01,
                      nesterov, first);
        EXPECT_EQ(download<float>(*gpu, dp, sn), p) << "sgd n=" << n;
        EXPECT_EQ(download<float>(*gpu, db, sn), buf) << "sgd buf n=" << n;
      }
  }
}

TEST(CudaBackend, BadDTypeIsAnErrorNotACrash) {
  LETHE_REQUIRE_CUDA(gpu);
  DeviceBuffer d(*gpu, 64);
  EXPECT_THROW(gpu->unary(kernels::UnaryOp::exp, DType::i32, 4, d.get(), d.get()), lethe::Error);
  kernels::GemmArgs g;
  g.dtype = DType::bf16;
  g.m = g.n = g.k = 1;
  EXPECT_THROW(gpu->gemm(g), lethe::Error);
}

}  // namespace
}  // namespace lethe::testing
