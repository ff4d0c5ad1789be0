// GradDiff: L = −γ·nll(F) + α·L_ret(R), L_ret = nll or kl (method.retain_loss).
#include "trainers/methods/method.h"

namespace lethe::trainers {

Method make_graddiff(const Config& c) {
  Method m;
  const Reduction red = nll_reduction(c);
  m.objectives = {{"forget_nll", BatchKind::forget, LossKind::nll, -1.0, red},
                  retain_objective(c, red)};
  m.rule = Rule::weighted;
  m.weights = {param(m, c, "method.gamma", 1.0), param(m, c, "method.alpha", 1.0)};
  return m;
}

}  // namespace lethe::trainers
