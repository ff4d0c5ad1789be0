// The harmful-rate judge: a classifier directory that `lethe finetune` with model.head:
// classifier wrote (trainers/classifier.h), loaded for prediction, and its class probabilities
// over the ranks of a run. No training here.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "models/sequence_classifier.h"
#include "models/tokenizer/tokenizer.h"

namespace lethe::eval {

struct Classifier {
  std::unique_ptr<models::SequenceClassifier> model;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;
};

// The classifier saved in `dir` (config.json, model.safetensors, the tokenizer files), on
// `device`, frozen.
Classifier load_classifier(const std::string& dir, Device device);

// Class probabilities [texts][labels] of `texts` (each [BOS] + its tokens, cut to max_length),
// batch_size at a time, right-padded; each rank of a run classifies its block and every rank gets
// all of them in order (eval/parallel.h).
std::vector<std::vector<double>> classify(const models::SequenceClassifier& model,
                                          const tokenizer::Tokenizer& tok,
                                          const std::vector<std::string>& texts, int64_t batch_size,
                                          int64_t max_length);

}  // namespace lethe::eval
