// NGDiff: d = g_R/‖g_R‖ − g_F/‖g_F‖ over the forget and retain NLL gradients, with GeN's
// automatic learning rate on by default.
#include "trainers/methods/method.h"

namespace lethe::trainers {

Method make_ngdiff(const Config& c) {
  Method m;
  const Reduction red = nll_reduction(c);
  m.objectives = {{"forget_nll", BatchKind::forget, LossKind::nll, 1.0, red},
                  {"retain_nll", BatchKind::retain, LossKind::nll, 1.0, red}};
  m.rule = Rule::ngdiff;
  m.gen.enabled = c.flag_or("method.auto_lr", true);
  m.gen.every = c.integer_or("method.auto_lr_every", 4);
  m.gen.objective = c.str_or("method.auto_lr_objective", "ngdiff");
  m.reported.emplace_back("method.auto_lr", m.gen.enabled ? 1.0 : 0.0);
  m.reported.emplace_back("method.auto_lr_every", static_cast<double>(m.gen.every));
  return m;
}

}  // namespace lethe::trainers
