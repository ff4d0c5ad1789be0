// Supervised fine-tuning (lethe finetune): the NLL of the answer tokens of the training batch.
#include "trainers/methods/method.h"

namespace lethe::trainers {

Method make_sft(const Config& c) {
  Method m;
  m.name = "sft";
  m.objectives = {{"train_nll", BatchKind::forget, LossKind::nll, 1.0, nll_reduction(c)}};
  m.rule = Rule::weighted;
  m.weights = {1.0};
  return m;
}

}  // namespace lethe::trainers
