// GradDiff: L = −γ·nll(F) + α·L_ret(R), L_ret = nll or kl (method.retain_loss).
#include "trainers/methods/method.h"

namespace lethe::trainers {

MethodSpec graddiff_method() {
  MethodSpec s;
  s.name = "graddiff";
  s.summary = "gradient ascent on the forget NLL, descent on the retain loss";
  s.keys = {gamma_key("1"), alpha_key("1"), retain_loss_key(), reduction_key()};
  s.build = [](const MethodParams& p) {
    Method m;
    const Reduction red = nll_reduction(p);
    m.objectives = {{"forget_nll", BatchKind::forget, LossKind::nll, -1.0, red},
                    retain_objective(p, red)};
    const double gamma = report(m, p, "gamma");
    m.rule = weighted_rule({gamma, report(m, p, "alpha")});
    return m;
  };
  return s;
}

}  // namespace lethe::trainers
