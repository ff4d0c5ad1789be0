// The fused head (linear_cross_entropy, linear_token_logprobs) against the unfused linear +
// cross_entropy / token_logprobs — themselves checked against PyTorch (losses_test.cpp) — in f32
// and f64 on odd sizes, every mode, chunk sizes that do and do not divide the rows; gradients that
// accumulate straight into a leaf's existing grad; and bad input. The f64 finite-difference
// checks are op-table rows (ops_loss_cases.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops.h"
#include "tests/common/compare.h"

namespace lethe {
namespace {

using lethe::testing::within;

// Every value of got within atol + rtol·|want| of want.
void expect_all_close(const Tensor& got, const Tensor& want, double atol, double rtol,
                      const std::string& what) {
  ASSERT_TRUE(got.defined()) << what;
  ASSERT_TRUE(want.defined()) << what;
  ASSERT_EQ(got.shape(), want.shape()) << what;
  const std::vector<double> g = got.to_double_vector(), w = want.to_double_vector();
  ASSERT_FALSE(g.empty()) << what;
  int bad = 0;
  for (size_t i = 0; i < g.size(); ++i)
    if (!within(g[i], w[i], atol, rtol) && bad++ < 5)
      ADD_FAILURE() << what << " [" << i << "]: " << g[i] << " vs " << w[i];
  EXPECT_EQ(bad, 0) << what;
}

// Targets in [0, V) with every 5th ignored; weights in ±[0.3, 1.2] (a third negative).
Tensor targets_for(const Shape& lead, int64_t V) {
  std::vector<int64_t> t(static_cast<size_t>(shape_numel(lead)));
  for (size_t i = 0; i < t.size(); ++i)
    t[i] = i % 5 == 2 ? -100 : static_cast<int64_t>(i * 7 + 1) % V;
  return Tensor::from_vector(t, lead, DType::i64);
}
Tensor weights_for(const Shape& lead) {
  std::vector<double> w(static_cast<size_t>(shape_numel(lead)));
  for (size_t i = 0; i < w.size(); ++i) w[i] = (0.3 + 0.3 * (i % 4)) * (i % 3 == 0 ? -1 : 1);
  return Tensor::from_vector(w, lead, DType::f32);
}

struct Grads {
  Tensor value, dx, dw;
};

// Runs `f(x, w)`, backpropagates `seed` (a scalar output gets −0.37), returns value and grads.
template <typename F>
Grads run(F f, const Tensor& x0, const Tensor& w0, const Tensor& seed) {
  Tensor x = x0.clone(), w = w0.clone();
  x.set_requires_grad(true);
  w.set_requires_grad(true);
  Tensor out = f(x, w);
  if (out.numel() == 1 && out.dim() == 0) {
    scale(out, -0.37).backward();
  } else {
    out.backward(seed.to(out.dtype()));
  }
  return {out.detach(), x.grad(), w.grad()};
}

struct Case {
  LossMode mode;
  double c;
  bool per_token;
  bool weighted;
  int64_t chunk;
};

class FusedHead : public ::testing::TestWithParam<DType> {};

TEST_P(FusedHead, EqualsLinearThenCrossEntropy) {
  const DType dt = GetParam();
  const double atol = dt == DType::f64 ? 1e-10 : 2e-5, rtol = dt == DType::f64 ? 1e-9 : 2e-4;
  const Shape lead = {3, 37};
  const int64_t E = 19, V = 101;
  const Tensor x = Tensor::randn({3, 37, E}, 11, 0.0, 1.0, dt);
  const Tensor w = Tensor::randn({V, E}, 12, 0.0, 0.4, dt);
  const Tensor targets = targets_for(lead, V);
  const Tensor seed = Tensor::randn(lead, 13, 0.0, 1.0, dt);
  int n = 0;
  for (LossMode mode : {LossMode::nll, LossMode::unlikelihood})
    for (double c : {0.5, 1.0})
      for (bool per_token : {false, true})
        for (bool weighted : {false, true})
          for (int64_t chunk : {int64_t{1}, int64_t{7}, int64_t{0}}) {
            if (mode == LossMode::nll && c != 1.0) continue;
            LinearCrossEntropyOptions fo;
            fo.mode = mode;
            fo.unlikelihood_c = c;
            fo.per_token = per_token;
            fo.chunk_rows = chunk;
            if (weighted) fo.weights = weights_for(lead);
            CrossEntropyOptions uo;
            uo.mode = mode;
            uo.unlikelihood_c = c;
            uo.reduction = Reduction::none;
            uo.weights = fo.weights;
            const std::string what =
                std::string(mode == LossMode::nll ? "nll" : "ul") + " c=" + std::to_string(c) +
                (per_token ? " per-token" : " sum") + (weighted ? " weighted" : "") + " chunk " +
                std::to_string(chunk) + " " + dtype_name(dt);
            const Grads fused =
                run([&](const Tensor& xx,
                        const Tensor& ww) { return linear_cross_entropy(xx, ww, targets, fo); },
                    x, w, seed);
            const Grads plain = run(
                [&](const Tensor& xx, const Tensor& ww) {
                  Tensor per = cross_entropy(linear(xx, ww), targets, uo);
                  return per_token ? per : sum(per);
                },
                x, w, seed);
            expect_all_close(fused.value, plain.value, atol, rtol, what + " value");
            expect_all_close(fused.dx, plain.dx, atol, rtol, what + " dx");
            expect_all_close(fused.dw, plain.dw, atol, rtol, what + " dw");
            ++n;
          }
  EXPECT_EQ(n, 36);
}

TEST_P(FusedHead, TokenLogprobsEqualUnfused) {
  const DType dt = GetParam();
  const Tensor x = Tensor::randn({2, 9, 6}, 21, 0.0, 1.0, dt);
  const Tensor w = Tensor::randn({23, 6}, 22, 0.0, 0.5, dt);
  const Tensor targets = targets_for({2, 9}, 23);
  const Tensor seed = Tensor::randn({2, 9}, 23, 0.0, 1.0, dt);
  const Grads fused =
      run([&](const Tensor& a, const Tensor& b) { return linear_token_logprobs(a, b, targets); }, x,
          w, seed);
  const Grads plain =
      run([&](const Tensor& a, const Tensor& b) { return token_logprobs(linear(a, b), targets); },
          x, w, seed);
  const double tol = dt == DType::f64 ? 1e-10 : 2e-5;
  expect_all_close(fused.value, plain.value, tol, tol, "logprobs");
  expect_all_close(fused.dx, plain.dx, tol, 1e-4, "dx");
  expect_all_close(fused.dw, plain.dw, tol, 1e-4, "dw");
}

INSTANTIATE_TEST_SUITE_P(Dtypes, FusedHead, ::testing::Values(DType::f32, DType::f64),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// A second backward adds to the existing grad (the per-token form and linear write into it
// directly; the scalar form and embedding through their own paths): twice the single gradient.
TEST(FusedHeadGrad, AccumulatesIntoAnExistingGrad) {
  const Tensor x0 = Tensor::randn({4, 5, 8}, 31, 0.0, 1.0, DType::f64);
  const Tensor w0 = Tensor::randn({17, 8}, 32, 0.0, 0.5, DType::f64);
  const Tensor targets = targets_for({4, 5}, 17);
  const Tensor ids = Tensor::from_vector(std::vector<int64_t>{1, 4, 4, 16, 0}, {5}, DType::i64);
  for (int form = 0; form < 4; ++form) {
    Tensor w = w0.clone();
    w.set_requires_grad(true);
    auto loss = [&] {
      LinearCrossEntropyOptions o;
      o.chunk_rows = 3;
      o.per_token = form == 1;
      switch (form) {
        case 0:
        case 1: return sum(linear_cross_entropy(x0, w, targets, o));
        case 2: return sum(square(linear(x0, w)));
        default: return sum(square(embedding(w, ids)));
      }
    };
    loss().backward();
    const std::vector<double> once = w.grad().to_double_vector();
    loss().backward();
    const std::vector<double> twice = w.grad().to_double_vector();
    ASSERT_EQ(once.size(), twice.size());
    double norm = 0;
    for (size_t i = 0; i < once.size(); ++i) {
      EXPECT_NEAR(twice[i], 2 * once[i], 1e-12) << "form " << form << " [" << i << "]";
      norm += std::abs(once[i]);
    }
    EXPECT_GT(norm, 0.0) << "form " << form;
  }
}

// Of 16 384 tokens, only one chunk of logits at a time: the loss of 2 chunks equals 1 chunk.
TEST(FusedHeadGrad, ChunkBudgetSetsTheRowsPerChunk) {
  const Tensor x = Tensor::randn({64, 16}, 41);
  const Tensor w = Tensor::randn({50, 16}, 42);
  const Tensor targets = targets_for({64}, 50);
  LinearCrossEntropyOptions one, budget;
  one.chunk_rows = 64;
  budget.chunk_bytes = 50 * 4 * 10;  // 10 rows of f32 logits: 7 chunks, the last one short
  const double a = linear_cross_entropy(x, w, targets, one).item();
  const double b = linear_cross_entropy(x, w, targets, budget).item();
  EXPECT_NEAR(a, b, 1e-4 * std::abs(a));
}

// linear_relu (the ReLU as the GEMM's epilogue) against relu(linear(...)): values and gradients.
TEST(FusedLinearRelu, EqualsReluOfLinear) {
  const Tensor x = Tensor::randn({3, 7, 13}, 51);
  const Tensor w = Tensor::randn({29, 13}, 52, 0.0, 0.3);
  const Tensor b = Tensor::randn({29}, 53);
  const Tensor seed = Tensor::randn({3, 7, 29}, 54);
  Tensor grads[2][4];
  for (int fused = 0; fused < 2; ++fused) {
    Tensor xx = x.clone(), ww = w.clone(), bb = b.clone();
    for (Tensor* t : {&xx, &ww, &bb}) t->set_requires_grad(true);
    Tensor y = fused ? linear_relu(xx, ww, bb) : relu(linear(xx, ww, bb));
    y.backward(seed);
    grads[fused][0] = y.detach();
    grads[fused][1] = xx.grad();
    grads[fused][2] = ww.grad();
    grads[fused][3] = bb.grad();
  }
  const char* what[] = {"value", "dx", "dw", "db"};
  for (int i = 0; i < 4; ++i) expect_all_close(grads[1][i], grads[0][i], 1e-5, 1e-5, what[i]);
  double zeros = 0;
  for (double v : grads[1][0].to_double_vector()) zeros += v == 0.0;
  EXPECT_GT(zeros, 100);  // the ReLU did cut: about half of the 609 outputs
}

TEST(FusedHeadErrors, NameTheBadInput) {
  const Tensor x = Tensor::randn({2, 3, 4}, 1);
  const Tensor w = Tensor::randn({5, 4}, 2);
  auto expect_error = [](const std::function<void()>& f, const std::string& needle) {
    try {
      f();
      ADD_FAILURE() << "no error; expected one mentioning " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  Tensor bad = targets_for({2, 3}, 5);
  bad.data<int64_t>()[4] = 5;
  expect_error([&] { linear_cross_entropy(x, w, bad); }, "target 5 at position [1, 1]");
  expect_error(
      [&] {
        linear_cross_entropy(x, Tensor::randn({5, 3}, 3), targets_for({2, 3}, 5));
      },
      "do not end in embed = 3");
  expect_error([&] { linear_cross_entropy(x, w, targets_for({3, 2}, 5)); }, "must have shape");
  LinearCrossEntropyOptions o;
  o.mode = LossMode::unlikelihood;
  o.unlikelihood_c = 1.5;
  expect_error([&] { linear_cross_entropy(x, w, targets_for({2, 3}, 5), o); }, "unlikelihood_c");
  o = {};
  o.weights = Tensor::ones({2, 2});
  expect_error([&] { linear_cross_entropy(x, w, targets_for({2, 3}, 5), o); }, "weights");
}

}  // namespace
}  // namespace lethe
