// NPO: γ·npo(F) + α·L_ret(R), the NPO loss −(2/β)·log σ(β(ℓ − ℓ_ref)) against a frozen
// reference; α = 0 is plain NPO, α > 0 NPO+RT (retain nll) or NPO+KL.
#include "trainers/methods/method.h"

namespace lethe::trainers {

MethodSpec npo_method() {
  MethodSpec s;
  s.name = "npo";
  s.summary = "negative preference optimisation against the reference model";
  s.keys = {beta_key("0.1"), gamma_key("1"), alpha_key("1"), retain_loss_key(), reduction_key()};
  s.build = [](const MethodParams& p) {
    Method m;
    m.params.beta = report(m, p, "beta");
    m.objectives = {{"forget_npo", BatchKind::forget, LossKind::npo, 1.0},
                    retain_objective(p, nll_reduction(p))};
    const double gamma = report(m, p, "gamma");
    m.rule = weighted_rule({gamma, report(m, p, "alpha")});
    return m;
  };
  return s;
}

}  // namespace lethe::trainers
