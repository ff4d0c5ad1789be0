// MOLLM: unlikelihood cross-entropy on F, KL to the reference on R and NLL on R, combined by
// MGDA (the min-norm point of their gradients' hull), with the degenerate-start rule. The gradients
// are equalised to their mean norm before the solve by default (docs/methods.md, "MOLLM after
// step 1"): without it a KL gradient that is tiny but above the exclusion threshold takes nearly
// all the weight and the direction collapses.
#include "trainers/methods/method.h"

namespace lethe::trainers {

MethodSpec mollm_method() {
  MethodSpec s;
  s.name = "mollm";
  s.summary = "unlikelihood on F, KL and NLL on R, combined by MGDA";
  s.keys = {{"c", KeyType::num, "0.5", "MOLLM unlikelihood coefficient c in (0, 1]", "", 1e-12, 1},
            {"normalize_grads", KeyType::flag, "true", "MGDA: equalise gradient norms first"},
            {"rescale_direction", KeyType::flag, "false",
             "MGDA: scale d to the norm of the mean gradient"},
            reduction_key()};
  s.build = [](const MethodParams& p) {
    Method m;
    m.params.c = report(m, p, "c");
    m.objectives = {{"forget_uce", BatchKind::forget, LossKind::uce, 1.0},
                    {"retain_kl", BatchKind::retain, LossKind::kl, 1.0},
                    {"retain_nll", BatchKind::retain, LossKind::nll, 1.0, nll_reduction(p)}};
    MgdaOptions o;
    o.normalize_grads = p.flag("normalize_grads");
    o.rescale_direction = p.flag("rescale_direction");
    m.rule = {"mgda", [o](const std::vector<double>& gram) { return combine_mgda(gram, o); }, true};
    return m;
  };
  return s;
}

}  // namespace lethe::trainers
