// NPO: γ·npo(F) + α·L_ret(R), the NPO loss −(2/β)·log σ(β(ℓ − ℓ_ref)) against a frozen
// reference; α = 0 is plain NPO, α > 0 NPO+RT (retain nll) or NPO+KL.
#include "trainers/methods/method.h"

namespace lethe::trainers {

Method make_npo(const Config& c) {
  Method m;
  m.params.beta = param(m, c, "method.beta", 0.1);
  m.objectives = {{"forget_npo", BatchKind::forget, LossKind::npo, 1.0},
                  retain_objective(c, nll_reduction(c))};
  m.rule = Rule::weighted;
  m.weights = {param(m, c, "method.gamma", 1.0), param(m, c, "method.alpha", 1.0)};
  return m;
}

}  // namespace lethe::trainers
