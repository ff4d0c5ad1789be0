// add_layer_norm is (dropout,) add then layer_norm fused: the same numbers bit for bit (sum, norm
// and every gradient), on rows with a large common offset, in f32 and f64, and its errors name
// the op.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops.h"

namespace lethe {
namespace {

struct Grads {
  std::vector<double> sum, normed, dx, dr, dw, db;
};

Grads run(bool fused, DType dtype, DropoutSpec drop = {}) {
  Tensor x = add_scalar(Tensor::randn({5, 37}, 1, 0.0, 1.0, dtype), 40.0).set_requires_grad(true);
  Tensor r = Tensor::randn({5, 37}, 2, 0.0, 1.0, dtype).set_requires_grad(true);
  Tensor w = Tensor::randn({37}, 3, 1.0, 0.1, dtype).set_requires_grad(true);
  Tensor b = Tensor::randn({37}, 4, 0.0, 0.1, dtype).set_requires_grad(true);
  Tensor total, normed;
  if (fused) {
    const ResidualNorm rn = add_layer_norm(x, r, w, b, 1e-5, drop);
    total = rn.sum;
    normed = rn.normed;
  } else {
    total = add(dropout(x, drop.p, true, drop.seed, drop.offset), r);
    normed = layer_norm(total, w, b);
  }
  // Both outputs used, as in a decoder: the norm feeds the next sublayer, the sum the residual.
  const Tensor dn = Tensor::randn({5, 37}, 5, 0.0, 1.0, dtype);
  const Tensor ds = Tensor::randn({5, 37}, 6, 0.0, 1.0, dtype);
  add(lethe::sum(mul(normed, dn)), lethe::sum(mul(total, ds))).backward();
  return {total.to_double_vector(),    normed.to_double_vector(),   x.grad().to_double_vector(),
          r.grad().to_double_vector(), w.grad().to_double_vector(), b.grad().to_double_vector()};
}

void expect_identical(const Grads& a, const Grads& b) {
  EXPECT_EQ(a.sum, b.sum);
  EXPECT_EQ(a.normed, b.normed);
  EXPECT_EQ(a.dx, b.dx);
  EXPECT_EQ(a.dr, b.dr);
  EXPECT_EQ(a.dw, b.dw);
  EXPECT_EQ(a.db, b.db);
}

TEST(AddLayerNorm, IsAddThenLayerNormBitForBit) {
  for (DType dtype : {DType::f32, DType::f64}) {
    SCOPED_TRACE(dtype_name(dtype));
    const Grads a = run(true, dtype), b = run(false, dtype);
    expect_identical(a, b);
    EXPECT_EQ(a.dx, a.dr);  // the sum's gradient reaches both inputs
  }
}

// With the sublayer's dropout fused in: dropout(x) + residual, then layer_norm, bit for bit, and
// the mask is not the identity (some of x's gradient is zero, the rest scaled by 1/(1 − p)).
TEST(AddLayerNorm, WithDropoutIsDropoutAddThenLayerNormBitForBit) {
  const DropoutSpec drop{0.25, 9, 4242};
  for (DType dtype : {DType::f32, DType::f64}) {
    SCOPED_TRACE(dtype_name(dtype));
    const Grads a = run(true, dtype, drop), b = run(false, dtype, drop);
    expect_identical(a, b);
    size_t zeros = 0, scaled = 0;
    for (size_t i = 0; i < a.dx.size(); ++i) {
      if (a.dx[i] == 0.0) ++zeros;
      if (std::abs(a.dx[i] - a.dr[i] / 0.75) <= 1e-6 * std::abs(a.dr[i])) ++scaled;
    }
    EXPECT_EQ(zeros + scaled, a.dx.size());
    EXPECT_GT(zeros, a.dx.size() / 8);
    EXPECT_GT(scaled, a.dx.size() / 2);
  }
}

TEST(AddLayerNorm, ErrorsNameTheOpAndTheMismatch) {
  const Tensor x = Tensor::zeros({2, 3}), w = Tensor::ones({3});
  try {
    add_layer_norm(x, Tensor::zeros({2, 4}), w, Tensor());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("add_layer_norm: residual"), std::string::npos)
        << e.what();
  }
  try {
    add_layer_norm(x, x, Tensor::ones({4}), Tensor());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("add_layer_norm: weight"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace lethe
