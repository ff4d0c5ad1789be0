// Forward values and gradients of the unary float ops against PyTorch
// (tests/unit/fixtures/elementwise.json, written by tools/fixtures/make_elementwise_fixtures.py).
// The op table checks each backward against finite differences of lethe's own forward; this
// checks the forward itself (and the backward once more) against an independent implementation.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/ops.h"
#include "tests/common/compare.h"
#include "tests/common/paths.h"

namespace lethe {
namespace {

using nlohmann::json;

const json& cases() {
  static const json j = [] {
    std::ifstream f(testing::source_dir() + "/tests/unit/fixtures/elementwise.json");
    if (!f) throw std::runtime_error("cannot open tests/unit/fixtures/elementwise.json");
    return json::parse(f);
  }();
  return j.at("cases");
}

const std::map<std::string, std::function<Tensor(const Tensor&)>> kOps = {
    {"gelu", [](const Tensor& x) { return gelu(x); }},
    {"tanh", [](const Tensor& x) { return tanh(x); }},
    {"sigmoid", [](const Tensor& x) { return sigmoid(x); }},
    {"log_sigmoid", [](const Tensor& x) { return log_sigmoid(x); }},
    {"exp", [](const Tensor& x) { return exp(x); }},
    {"log", [](const Tensor& x) { return log(x); }},
    {"sqrt", [](const Tensor& x) { return sqrt(x); }},
    {"silu", [](const Tensor& x) { return silu(x); }},
};

// The reference is torch in float64 on the same input values (exact to ~1e-16). What lethe may
// differ by follows from its dtype's unit roundoff u (2^-53 for f64, 2^-24 for f32):
//  * every op: a few ulp of the result, 16·u·|want| (libm / SLEEF-class accuracy), with a floor of
//    the smallest normal number (results that underflow to subnormals carry no relative accuracy);
//  * where the textbook formula cancels — and PyTorch's own kernels use the same formulas — an
//    absolute error of a few u on the scale of the terms that cancel: gelu's 0.5·x·(1 + erf(x/√2))
//    loses 8·u·|x| when erf → −1; the gradients 1 − tanh², σ·(1 − σ), Φ + x·φ and 1 − σ lose
//    8·u·|seed| as they approach 0.
struct Tolerance {
  double fwd_abs_per_x = 0;  // × u·|x|
  double grad_abs = 0;       // × u·|seed|
};
const std::map<std::string, Tolerance> kCancellation = {
    {"gelu", {8, 8}},        {"tanh", {0, 8}}, {"sigmoid", {0, 8}},
    {"log_sigmoid", {0, 8}}, {"silu", {0, 8}},  // s·(1 + x·(1 − s)) → 0 for large negative x
};

TEST(ElementwiseFixtures, ForwardAndGradientMatchTorch) {
  ASSERT_EQ(cases().size(), 16u) << "8 ops x {f64, f32}: update with the generator";
  std::map<std::string, int> seen;
  for (const json& c : cases()) {
    const std::string op = c.at("op"), dts = c.at("dtype");
    SCOPED_TRACE(op + " " + dts);
    ASSERT_TRUE(kOps.count(op)) << op;
    ++seen[op];
    const DType dt = dts == "f64" ? DType::f64 : DType::f32;
    const auto xv = c.at("x").get<std::vector<double>>();
    const auto yv = c.at("y").get<std::vector<double>>();
    const auto sv = c.at("seed").get<std::vector<double>>();
    const auto gv = c.at("grad").get<std::vector<double>>();
    ASSERT_GE(xv.size(), 80u);
    ASSERT_EQ(yv.size(), xv.size());
    ASSERT_EQ(gv.size(), xv.size());
    const Shape shape{static_cast<int64_t>(xv.size())};
    Tensor x = Tensor::from_vector(xv, shape, dt).set_requires_grad(true);
    Tensor y = kOps.at(op)(x);
    y.backward(Tensor::from_vector(sv, shape, dt));
    const auto got = y.to_double_vector();
    const auto grad = x.grad().to_double_vector();
    ASSERT_EQ(got.size(), yv.size());
    ASSERT_EQ(grad.size(), gv.size());
    const double u = dt == DType::f64 ? 0x1p-53 : 0x1p-24;
    const double floor = dt == DType::f64 ? 0x1p-1022 : 0x1p-126;
    const Tolerance t = kCancellation.count(op) ? kCancellation.at(op) : Tolerance{};
    double worst_y = 0, worst_g = 0;  // errors in units of the allowed error
    for (size_t i = 0; i < xv.size(); ++i) {
      const double tol_y = 16 * u * std::abs(yv[i]) + floor + t.fwd_abs_per_x * u * std::abs(xv[i]);
      const double tol_g = 16 * u * std::abs(gv[i]) + floor + t.grad_abs * u * std::abs(sv[i]);
      EXPECT_TRUE(testing::within(got[i], yv[i], tol_y, 0))
          << "x = " << xv[i] << ": lethe " << got[i] << ", torch f64 " << yv[i] << " (allowed "
          << tol_y << ")";
      EXPECT_TRUE(testing::within(grad[i], gv[i], tol_g, 0))
          << "x = " << xv[i] << ": lethe grad " << grad[i] << ", torch f64 " << gv[i]
          << " (allowed " << tol_g << ")";
      worst_y = testing::nan_max(worst_y, std::abs(got[i] - yv[i]) / tol_y);
      worst_g = testing::nan_max(worst_g, std::abs(grad[i] - gv[i]) / tol_g);
    }
    std::printf("[elementwise] %-11s %s: worst error / allowed: y %.3f, grad %.3f (%zu points)\n",
                op.c_str(), dts.c_str(), worst_y, worst_g, xv.size());
  }
  for (const auto& [op, fn] : kOps) EXPECT_EQ(seen[op], 2) << op << " needs an f64 and an f32 case";
}

}  // namespace
}  // namespace lethe
