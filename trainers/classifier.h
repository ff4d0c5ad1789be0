// The harmful-response classifier's data and training: labelled texts, their batched encoding and
// class probabilities on this process, and `lethe finetune` with model.head: classifier
// (cross-entropy on the class of each text, AdamW, the recipe's schedule and clipping). The model
// is models::SequenceClassifier; no model family internals here, and no evaluation (eval/).
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "models/sequence_classifier.h"
#include "models/tokenizer/tokenizer.h"
#include "trainers/config.h"

namespace lethe::trainers {

struct LabelledText {
  std::string text;
  int64_t label = 0;
  std::string source;  // "file:line" for messages
};

// Reads labelled texts. `pku`: each PKU-SafeRLHF object gives two texts, its prompt with each
// response through `prompt_template` ("" = PKU's "### Question: {question}\n### Answer:
// {answer}"), label 1 when the response is unsafe, 0 when safe. `jsonl`: {"text", "label"} or
// {"prompt", "response", "label"} (through the template) with an integer label in
// [0, num_labels). Errors name the file, line and field.
std::vector<LabelledText> load_labelled_texts(const std::string& path, const std::string& format,
                                              const std::string& prompt_template,
                                              int64_t num_labels);

// The classifier's input for `texts`: [BOS] + the tokens of each, cut to max_length, right-padded
// with pad into ids and mask (i64 [texts, longest]).
void encode_texts(const tokenizer::Tokenizer& tok, const std::vector<const std::string*>& texts,
                  int64_t max_length, int64_t pad, Tensor& ids, Tensor& mask);

// Class probabilities [texts][labels] of `texts` (encoded as encode_texts does), batch_size at a
// time, all on this process (eval::classify shares them over the ranks of a run).
std::vector<std::vector<double>> class_probabilities(const models::SequenceClassifier& model,
                                                     const tokenizer::Tokenizer& tok,
                                                     const std::vector<std::string>& texts,
                                                     int64_t batch_size, int64_t max_length);

struct ClassifierRun {
  int64_t steps = 0;
  std::vector<double> losses;  // per optimizer step (mean cross-entropy of the step's batch)
  double train_accuracy = 0;   // after training, on data.train
};

// `lethe finetune` with model.head: classifier: trains on data.train and writes output.dir
// (config.json, model.safetensors, the tokenizer files, run.json).
ClassifierRun train_classifier(const Config& config, std::ostream& log, bool terminal);

}  // namespace lethe::trainers
