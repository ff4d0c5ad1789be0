// The in-place updates axpy_, scale_, normal_ and uniform_: values against a hand computation and
// against the backend kernels they stand for (bit for bit), and clear errors for bad arguments.
#include <gtest/gtest.h>

#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "kernels/backend.h"
#include "tests/common/expect_error.h"

using namespace lethe;
using lethe::testing::expect_error;

namespace {

Tensor vec(const std::vector<double>& v, DType dtype = DType::f32) {
  return Tensor::from_vector(v, {static_cast<int64_t>(v.size())}, dtype);
}

Tensor leaf(const Shape& shape) {
  Tensor t = Tensor::ones(shape);
  t.set_requires_grad(true);
  return t;
}

}  // namespace

TEST(InPlaceOps, AxpyAddsAScaledTensor) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor y = vec({1, 2, 3, 4}, dt);
    Tensor& same = axpy_(y, 2.0, vec({0.5, -1, 2, 0.25}, dt));
    EXPECT_TRUE(same.same(y));
    EXPECT_EQ(y.to_double_vector(), (std::vector<double>{2, 0, 7, 4.5})) << dtype_name(dt);
  }
  // x may be strided: it is read in y's logical order.
  Tensor y = Tensor::zeros({2, 3});
  Tensor x = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {3, 2}).transpose(0, 1);
  axpy_(y, -1.0, x);
  EXPECT_EQ(y.to_double_vector(), (std::vector<double>{-1, -3, -5, -2, -4, -6}));
  Tensor empty = Tensor::zeros({0, 3});
  axpy_(empty, 2.0, Tensor::zeros({0, 3}));  // nothing to do
}

TEST(InPlaceOps, ScaleMultipliesInPlace) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = vec({1, -2, 3.5, 0}, dt);
    Tensor view = x.slice(0, 1, 3);  // a contiguous view writes through to x
    scale_(view, 0.5);
    EXPECT_EQ(x.to_double_vector(), (std::vector<double>{1, -1, 1.75, 0})) << dtype_name(dt);
  }
}

TEST(InPlaceOps, AxpyAndScaleAreTheBackendsAxpby) {
  const std::vector<float> xs = Tensor::randn({257}, 3).to_float_vector();
  const std::vector<float> ys = Tensor::randn({257}, 4).to_float_vector();
  std::vector<float> expect_axpy = ys, expect_scale = ys;
  kernels::cpu_backend().axpby(DType::f32, 257, -0.37, xs.data(), 1.0, expect_axpy.data());
  kernels::cpu_backend().axpby(DType::f32, 257, 0.37, expect_scale.data(), 0.0,
                               expect_scale.data());
  Tensor y = Tensor::from_vector(ys, {257});
  axpy_(y, -0.37, Tensor::from_vector(xs, {257}));
  EXPECT_EQ(y.to_float_vector(), expect_axpy);
  Tensor z = Tensor::from_vector(ys, {257});
  scale_(z, 0.37);
  EXPECT_EQ(z.to_float_vector(), expect_scale);
}

TEST(InPlaceOps, RandomFillsAreTheBackendsGenerator) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor n = Tensor::empty({7, 5}, dt);
    n.normal_(11, 3, 0.5, 2.0);
    Tensor u = Tensor::empty({7, 5}, dt);
    u.uniform_(12, 40, -1.0, 3.0);
    std::vector<double> normal(35), uniform(35);
    kernels::cpu_backend().fill_normal(DType::f64, normal.data(), 35, 11, 3, 0.5, 2.0);
    kernels::cpu_backend().fill_uniform(DType::f64, uniform.data(), 35, 12, 40, -1.0, 3.0);
    if (dt == DType::f64) {
      EXPECT_EQ(n.to_double_vector(), normal);
      EXPECT_EQ(u.to_double_vector(), uniform);
    }
    // The factories draw the same numbers.
    EXPECT_EQ(Tensor::randn({7, 5}, 11, 0.5, 2.0, dt, Device::cpu(), 3).to_double_vector(),
              n.to_double_vector());
    EXPECT_EQ(Tensor::rand({7, 5}, 12, -1.0, 3.0, dt, Device::cpu(), 40).to_double_vector(),
              u.to_double_vector());
    for (double v : u.to_double_vector()) {
      EXPECT_GE(v, -1.0);
      EXPECT_LE(v, 3.0);
    }
  }
  // A strided target gets the values in its logical order.
  Tensor base = Tensor::zeros({5, 7});
  Tensor t = base.transpose(0, 1);
  t.normal_(11, 3, 0.5, 2.0);
  EXPECT_EQ(t.to_double_vector(),
            Tensor::randn({7, 5}, 11, 0.5, 2.0, DType::f32, Device::cpu(), 3).to_double_vector());
}

TEST(InPlaceOps, BadArgumentsAreClearErrors) {
  Tensor y = vec({1, 2, 3});
  expect_error([&] { axpy_(y, 1.0, vec({1, 2})); }, {"axpy_", "does not match", "f32[3]"});
  expect_error([&] { axpy_(y, 1.0, vec({1, 2, 3}, DType::f64)); }, {"axpy_", "dtype mismatch"});
  Tensor ints = vec({1, 2, 3}).to(DType::i64);
  expect_error([&] { axpy_(ints, 1.0, ints); }, {"axpy_", "i64", "not supported"});
  expect_error([&] { scale_(ints, 2.0); }, {"scale_", "i64", "not supported"});
  Tensor strided = Tensor::zeros({3, 2}).transpose(0, 1);
  expect_error([&] { axpy_(strided, 1.0, Tensor::zeros({2, 3})); }, {"axpy_", "not contiguous"});
  expect_error([&] { scale_(strided, 2.0); }, {"scale_", "not contiguous"});
  Tensor undefined;
  expect_error([&] { axpy_(y, 1.0, undefined); }, {"axpy_", "undefined"});
  expect_error([&] { scale_(undefined, 1.0); }, {"scale_", "undefined"});
  expect_error([&] { ints.normal_(1, 0, 0.0, 1.0); }, {"normal_", "i64", "not floating"});
  expect_error([&] { y.normal_(1, 0, 0.0, -1.0); }, {"normal_", "stddev must be >= 0"});
  expect_error([&] { y.uniform_(1, 0, 2.0, 1.0); }, {"uniform_", "low 2 > high 1"});
  if (kernels::cuda_backend()) {
    Tensor on_gpu = Tensor::zeros({3}, DType::f32, Device::cuda());
    expect_error([&] { axpy_(y, 1.0, on_gpu); }, {"axpy_", "device mismatch"});
  }
}

TEST(InPlaceOps, RefuseTensorsThatRequireGradUnlessGradModeIsOff) {
  Tensor w = leaf({2});
  expect_error([&] { axpy_(w, 1.0, Tensor::ones({2})); }, {"axpy_", "requires grad"});
  expect_error([&] { scale_(w, 2.0); }, {"scale_", "requires grad"});
  expect_error([&] { w.normal_(1, 0, 0.0, 1.0); }, {"normal_", "requires grad"});
  expect_error([&] { w.uniform_(1, 0, 0.0, 1.0); }, {"uniform_", "requires grad"});
  NoGradGuard ng;
  axpy_(w, 1.0, Tensor::ones({2}));
  scale_(w, 3.0);
  EXPECT_EQ(w.to_double_vector(), (std::vector<double>{6, 6}));
  w.uniform_(1, 0, 0.0, 1.0);
}
