// Supervised fine-tuning (lethe finetune): the NLL of the answer tokens of the training batch. Not
// an unlearning method, so not in methods/list.h; make_method uses it for finetune runs.
#include "trainers/methods/method.h"

namespace lethe::trainers {

MethodSpec sft_method() {
  MethodSpec s;
  s.name = "sft";
  s.summary = "supervised fine-tuning on the answer tokens";
  s.keys = {reduction_key()};
  s.needs_retain = false;
  s.build = [](const MethodParams& p) {
    Method m;
    m.objectives = {{"train_nll", BatchKind::forget, LossKind::nll, 1.0, nll_reduction(p)}};
    m.rule = weighted_rule({1.0});
    return m;
  };
  return s;
}

}  // namespace lethe::trainers
