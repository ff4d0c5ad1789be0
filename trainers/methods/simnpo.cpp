// SimNPO: γ·(−(2/β)·mean log σ(β(ℓ/|y| − δ))) + α·nll(R); no reference model.
#include "trainers/methods/method.h"

namespace lethe::trainers {

Method make_simnpo(const Config& c) {
  Method m;
  m.params.beta = param(m, c, "method.beta", 4.5);
  m.params.delta = param(m, c, "method.delta", 0.0);
  m.objectives = {{"forget_simnpo", BatchKind::forget, LossKind::simnpo, 1.0},
                  {"retain_nll", BatchKind::retain, LossKind::nll, 1.0, nll_reduction(c)}};
  m.rule = Rule::weighted;
  m.weights = {param(m, c, "method.gamma", 0.125), param(m, c, "method.alpha", 1.0)};
  return m;
}

}  // namespace lethe::trainers
