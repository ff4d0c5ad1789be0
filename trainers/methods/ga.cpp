// GA: gradient ascent on the forget NLL, L = −nll(F).
#include "trainers/methods/method.h"

namespace lethe::trainers {

Method make_ga(const Config& c) {
  Method m;
  m.objectives = {{"forget_nll", BatchKind::forget, LossKind::nll, -1.0, nll_reduction(c)}};
  m.rule = Rule::weighted;
  m.weights = {1.0};
  return m;
}

}  // namespace lethe::trainers
