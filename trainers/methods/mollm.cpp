// MOLLM: unlikelihood cross-entropy on F, KL to the reference on R and NLL on R, combined by
// MGDA (the min-norm point of their gradients' hull), with the degenerate-start rule. The gradients
// are equalised to their mean norm before the solve by default (docs/methods.md, "MOLLM after
// step 1"): without it a KL gradient that is tiny but above the exclusion threshold takes nearly
// all the weight and the direction collapses.
#include "trainers/methods/method.h"

namespace lethe::trainers {

Method make_mollm(const Config& c) {
  Method m;
  m.params.c = param(m, c, "method.c", 0.5);
  m.objectives = {{"forget_uce", BatchKind::forget, LossKind::uce, 1.0},
                  {"retain_kl", BatchKind::retain, LossKind::kl, 1.0},
                  {"retain_nll", BatchKind::retain, LossKind::nll, 1.0, nll_reduction(c)}};
  m.rule = Rule::mgda;
  m.mgda.normalize_grads = c.flag_or("method.normalize_grads", true);
  m.mgda.rescale_direction = c.flag_or("method.rescale_direction", false);
  return m;
}

}  // namespace lethe::trainers
