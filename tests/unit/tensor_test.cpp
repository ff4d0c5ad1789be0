// Tensor basics: views share storage, copies and casts, RNG reproducibility, gradient accumulation.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "kernels/backend.h"

using namespace lethe;

TEST(Tensor, ViewsShareStorage) {
  Tensor t = Tensor::from_vector(std::vector<double>{0, 1, 2, 3, 4, 5}, {2, 3});
  Tensor tt = t.transpose(0, 1);
  EXPECT_EQ(tt.shape(), (Shape{3, 2}));
  EXPECT_FALSE(tt.is_contiguous());
  EXPECT_EQ(tt.to_double_vector(), (std::vector<double>{0, 3, 1, 4, 2, 5}));
  Tensor s = t.slice(1, 1, 3);  // columns 1..2
  EXPECT_EQ(s.to_double_vector(), (std::vector<double>{1, 2, 4, 5}));
  s.fill_(9.0);  // writes through to t
  EXPECT_EQ(t.to_double_vector(), (std::vector<double>{0, 9, 9, 3, 9, 9}));
  EXPECT_EQ(t.reshape({3, 2}).storage().get(), t.storage().get());
  Tensor p = t.permute({1, 0}).contiguous();
  EXPECT_TRUE(p.is_contiguous());
  EXPECT_NE(p.storage().get(), t.storage().get());
  EXPECT_EQ(t.slice(1, 0, 3, 2).to_double_vector(), (std::vector<double>{0, 9, 3, 9}));
}

TEST(Tensor, CastsRoundTripAndMatchIeee) {
  // IEEE binary16 / bfloat16 encodings of exactly representable values.
  EXPECT_EQ(f32_to_f16(1.0f), 0x3C00);
  EXPECT_EQ(f32_to_f16(-2.0f), 0xC000);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7BFF);
  EXPECT_EQ(f32_to_f16(1e6f), 0x7C00);                   // overflow → inf
  EXPECT_EQ(f32_to_f16(5.960464477539063e-8f), 0x0001);  // smallest subnormal
  EXPECT_EQ(f16_to_f32(0x0001), 5.960464477539063e-8f);
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(bf16_to_f32(0xC040), -3.0f);
  EXPECT_EQ(f32_to_bf16(1.00390625f), 0x3F80);  // tie rounds to even
  EXPECT_EQ(f32_to_bf16(1.01171875f), 0x3F82);  // tie rounds to even (up)
  std::vector<double> v{0.5, -1.25, 3.0, 1024.0};
  for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::f64}) {
    Tensor t = Tensor::from_vector(v, {4}, dt);
    EXPECT_EQ(t.to(DType::f64).to_double_vector(), v) << dtype_name(dt);
  }
  Tensor i = Tensor::from_vector(std::vector<double>{1.9, -2.5}, {2}).to(DType::i64);
  EXPECT_EQ(i.to_int_vector(), (std::vector<int64_t>{1, -2}));  // truncation, as torch
}

TEST(Tensor, RngIsReproducibleAndSliceable) {
  auto& cpu = kernels::cpu_backend();
  std::vector<float> a(1000), b(1000), c(500);
  cpu.fill_normal(DType::f32, a.data(), 1000, 7, 0, 0, 1);
  cpu.fill_normal(DType::f32, b.data(), 1000, 7, 0, 0, 1);
  cpu.fill_normal(DType::f32, c.data(), 500, 7, 500, 0, 1);  // the second half on its own
  EXPECT_EQ(a, b);
  for (int i = 0; i < 500; ++i) EXPECT_EQ(a[500 + i], c[i]);
  double mean = 0, var = 0;
  for (float x : a) mean += x;
  mean /= 1000;
  for (float x : a) var += (x - mean) * (x - mean);
  var /= 1000;
  EXPECT_NEAR(mean, 0.0, 0.1);
  EXPECT_NEAR(var, 1.0, 0.15);
  std::vector<float> d(1000);
  cpu.fill_normal(DType::f32, d.data(), 1000, 8, 0, 0, 1);
  EXPECT_NE(a, d);
  // Dropout keeps about 1 - p and scales by 1 / (1 - p).
  Tensor m = dropout(Tensor::ones({10000}), 0.25, true, 3);
  int kept = 0;
  for (double x : m.to_double_vector()) {
    if (x != 0) {
      ++kept;
      EXPECT_NEAR(x, 1.0 / 0.75, 1e-6);
    }
  }
  EXPECT_NEAR(kept / 10000.0, 0.75, 0.02);
  EXPECT_EQ(dropout(Tensor::ones({5}), 0.25, false, 3).to_double_vector(),
            std::vector<double>(5, 1.0));
}

TEST(Tensor, RandFactoriesAreSeeded) {
  Tensor a = Tensor::randn({4, 5}, 11, 2.0, 0.5);
  EXPECT_EQ(a.to_double_vector(), Tensor::randn({4, 5}, 11, 2.0, 0.5).to_double_vector());
  EXPECT_NE(a.to_double_vector(), Tensor::randn({4, 5}, 12, 2.0, 0.5).to_double_vector());
  for (double x : Tensor::rand({100}, 3, -1.0, 2.0).to_double_vector()) {
    EXPECT_GE(x, -1.0);
    EXPECT_LT(x, 2.0);
  }
  EXPECT_THROW(Tensor::randn({2}, 1, 0, 1, DType::i64), Error);
}

TEST(Tensor, GradientsAccumulateAcrossBackwards) {
  Tensor w = Tensor::from_vector(std::vector<double>{1, 2}, {2}, DType::f64);
  w.set_requires_grad(true);
  sum(mul(w, w)).backward();
  sum(scale(w, 3.0)).backward();
  EXPECT_EQ(w.grad().to_double_vector(), (std::vector<double>{5, 7}));
  // A grad bound to a view of a larger buffer is filled in place.
  Tensor flat = Tensor::zeros({4}, DType::f64);
  w.set_grad(flat.slice(0, 1, 3));
  sum(mul(w, w)).backward();
  EXPECT_EQ(flat.to_double_vector(), (std::vector<double>{0, 2, 4, 0}));
  w.zero_grad();
  EXPECT_EQ(flat.to_double_vector(), (std::vector<double>{0, 0, 0, 0}));
}

TEST(Tensor, SharedSubgraphGetsSummedGradient) {
  Tensor x = Tensor::from_vector(std::vector<double>{3}, {1}, DType::f64);
  x.set_requires_grad(true);
  Tensor y = mul(x, x);               // used twice below
  sum(add(y, mul(y, x))).backward();  // d/dx (x^2 + x^3) = 2x + 3x^2 = 33
  EXPECT_NEAR(x.grad().item(), 33.0, 1e-12);
}

TEST(Tensor, Bf16MatmulPrecisionRoundsOperands) {
  Tensor a = Tensor::from_vector(std::vector<float>{1.00390625f, 1.0f}, {1, 2});
  Tensor b = Tensor::from_vector(std::vector<float>{1.0f, 1.0f}, {2, 1});
  EXPECT_FLOAT_EQ(matmul(a, b).item(), 2.00390625f);
  set_matmul_precision(MatmulPrecision::bf16);
  EXPECT_FLOAT_EQ(matmul(a, b).item(), 2.0f);  // 1.00390625 rounds to 1.0 in bf16
  set_matmul_precision(MatmulPrecision::f32);
}
