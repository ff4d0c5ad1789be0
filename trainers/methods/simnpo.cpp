// SimNPO: γ·(−(2/β)·mean log σ(β(ℓ/|y| − δ))) + α·nll(R); no reference model.
#include "trainers/methods/method.h"

namespace lethe::trainers {

MethodSpec simnpo_method() {
  MethodSpec s;
  s.name = "simnpo";
  s.summary = "reference-free NPO on the length-normalised forget NLL";
  s.keys = {beta_key("4.5"),
            {"delta", KeyType::num, "0", "SimNPO margin"},
            gamma_key("0.125"),
            alpha_key("1"),
            reduction_key()};
  s.build = [](const MethodParams& p) {
    Method m;
    m.params.beta = report(m, p, "beta");
    m.params.delta = report(m, p, "delta");
    m.objectives = {{"forget_simnpo", BatchKind::forget, LossKind::simnpo, 1.0},
                    {"retain_nll", BatchKind::retain, LossKind::nll, 1.0, nll_reduction(p)}};
    const double gamma = report(m, p, "gamma");
    m.rule = weighted_rule({gamma, report(m, p, "alpha")});
    return m;
  };
  return s;
}

}  // namespace lethe::trainers
