// The op harness must be able to fail. Each test feeds it an op whose backward is broken in one
// way (NaN gradient, wrong gradient, no gradient on the "device" run) and expects a failure; an
// op with a correct backward must pass. Without these, a harness that passes everything would go
// unnoticed (the gradient check once passed NaN gradients: NaN > tol is false).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "engine/autograd.h"
#include "op_harness.h"

namespace lethe::testing {
namespace {

enum class Broken { none, nan, doubled, missing, inf, detached };

// y = x (a copy) with a backward that returns `g` transformed as `how` says.
class IdentityNode : public Node {
 public:
  explicit IdentityNode(Broken how) : how_(how) {}
  const char* name() const override { return "IdentityForHarnessSelftest"; }
  std::vector<Tensor> apply(const Tensor& g) override {
    NoGradGuard ng;
    switch (how_) {
      case Broken::none: return {g.clone()};
      case Broken::nan:
        return {mul(g, Tensor::full(g.shape(), std::nan(""), g.dtype(), g.device()))};
      case Broken::inf:
        return {add(g, Tensor::full(g.shape(), std::numeric_limits<double>::infinity(), g.dtype(),
                                    g.device()))};
      case Broken::doubled: return {scale(g, 2.0)};
      case Broken::missing: return {Tensor()};
      case Broken::detached: break;
    }
    return {};
  }

 private:
  Broken how_;
};

Tensor identity(const Tensor& x, Broken how) {
  Tensor out;
  {
    NoGradGuard ng;
    out = x.clone();
  }
  // detached: the output has no graph at all, so no gradient reaches the input.
  if (how != Broken::detached && any_requires_grad({&x}))
    attach_node(out, std::make_shared<IdentityNode>(how), {&x});
  return out;
}

OpCase case_of(const std::string& name, Broken how) {
  return {name, {{3, 4}}, [how](const std::vector<Tensor>& x) { return identity(x[0], how); }};
}

TEST(OpHarnessSelftest, CorrectBackwardPasses) {
  EXPECT_EQ(gradcheck(case_of("selftest ok", Broken::none)), "");
  EXPECT_EQ(compare_backends(case_of("selftest ok", Broken::none), Device::cpu()), "");
}

TEST(OpHarnessSelftest, GradcheckFailsOnNanInfAndWrongGradients) {
  EXPECT_NE(gradcheck(case_of("selftest nan", Broken::nan)), "");
  EXPECT_NE(gradcheck(case_of("selftest inf", Broken::inf)), "");
  EXPECT_NE(gradcheck(case_of("selftest doubled", Broken::doubled)), "");
  EXPECT_NE(gradcheck(case_of("selftest missing", Broken::missing)), "");
  EXPECT_NE(gradcheck(case_of("selftest detached", Broken::detached)), "");
}

// compare_backends runs the op twice (reference CPU, then the device). Here the "device" run gets
// a broken backward. A device run with no gradient at all (detached) once compared as "no error
// over zero elements" and passed.
TEST(OpHarnessSelftest, BackendComparisonFailsWhenTheDeviceGradientIsMissingOrNan) {
  for (Broken how : {Broken::detached, Broken::missing, Broken::nan, Broken::doubled}) {
    int calls = 0;
    OpCase c{"selftest device", {{3, 4}}, [&calls, how](const std::vector<Tensor>& x) {
               return identity(x[0], calls++ == 0 ? Broken::none : how);
             }};
    EXPECT_NE(compare_backends(c, Device::cpu()), "") << static_cast<int>(how);
    EXPECT_EQ(calls, 2);
  }
}

// Every op-table row passes the backend comparison against itself (CPU vs CPU): the stricter
// length checks of compare_backends hold for every real row, not only on a GPU machine.
TEST(OpHarnessSelftest, EveryRowComparesEqualWithItselfOnTheCpu) {
  ASSERT_GT(op_table().size(), 100u);
  for (const OpCase& c : op_table())
    EXPECT_EQ(compare_backends(c, Device::cpu(), 1e-6), "") << c.name;
}

}  // namespace
}  // namespace lethe::testing
