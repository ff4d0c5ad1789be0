// Embedding lethe in another C++ program: build a two-layer MLP from the installed engine, run a
// forward and a backward pass, and check one gradient against a finite difference.
#include <cmath>
#include <cstdio>

#include "engine/autograd.h"
#include "engine/ops.h"

using namespace lethe;

static Tensor randn(const Shape& shape, uint64_t seed) {
  return Tensor::randn(shape, seed, 0.0, 0.5, DType::f64);
}

int main() {
  Tensor x = randn({4, 6}, 1), w1 = randn({8, 6}, 2), b1 = randn({8}, 3), w2 = randn({3, 8}, 4);
  Tensor target = randn({4, 3}, 5);
  for (Tensor* p : {&w1, &b1, &w2}) p->set_requires_grad(true);
  auto loss_of = [&] { return mean(square(sub(linear(relu(linear(x, w1, b1)), w2), target))); };

  Tensor loss = loss_of();
  loss.backward();
  double analytic = w1.grad().to_double_vector()[5];

  // Central difference on the same element.
  const double eps = 1e-6;
  double* p = w1.data<double>() + 5;
  double saved = *p;
  double plus, minus;
  {
    NoGradGuard ng;
    *p = saved + eps;
    plus = loss_of().item();
    *p = saved - eps;
    minus = loss_of().item();
    *p = saved;
  }
  double numeric = (plus - minus) / (2 * eps);
  std::printf("loss %.6f  dL/dw1[0,5] analytic %.8f numeric %.8f\n", loss.item(), analytic,
              numeric);
  bool ok = std::abs(analytic - numeric) <= 1e-6 + 1e-4 * std::abs(numeric);
  std::printf("%s\n", ok ? "embed example: OK" : "embed example: gradient mismatch");
  return ok ? 0 : 1;
}
