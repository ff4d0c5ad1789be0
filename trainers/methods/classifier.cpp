// Sequence-classifier fine-tuning (lethe finetune with model.head: classifier): the cross-entropy
// of each training text's class through the score head on its last real token — transformers'
// single-label *ForSequenceClassification loss. Not an unlearning method, so not in
// methods/list.h; make_method uses it for finetune runs whose model.head is classifier.
#include "trainers/methods/method.h"

namespace lethe::trainers {

MethodSpec classifier_method() {
  MethodSpec s;
  s.name = "classifier";
  s.summary = "sequence-classifier fine-tuning: cross-entropy of each text's class";
  s.needs_retain = false;
  s.build = [](const MethodParams&) {
    Method m;
    m.objectives = {{"train_ce", BatchKind::forget, LossKind::classify, 1.0}};
    m.rule = weighted_rule({1.0});
    return m;
  };
  return s;
}

}  // namespace lethe::trainers
