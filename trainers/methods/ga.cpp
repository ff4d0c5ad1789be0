// GA: gradient ascent on the forget NLL, L = −nll(F).
#include "trainers/methods/method.h"

namespace lethe::trainers {

MethodSpec ga_method() {
  MethodSpec s;
  s.name = "ga";
  s.summary = "gradient ascent on the forget NLL";
  s.keys = {reduction_key()};
  s.needs_retain = false;
  s.build = [](const MethodParams& p) {
    Method m;
    m.objectives = {{"forget_nll", BatchKind::forget, LossKind::nll, -1.0, nll_reduction(p)}};
    m.rule = weighted_rule({1.0});
    return m;
  };
  return s;
}

}  // namespace lethe::trainers
