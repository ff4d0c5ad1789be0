// The harmful-response classifier's data and training: labelled texts, their encoding as training
// samples and as batches, class probabilities on this process, and `lethe finetune` with
// model.head: classifier — the shared training loop (trainers/trainer.h) with the classifier's
// objective (methods/classifier.cpp). The model is models::SequenceClassifier; no model family
// internals here, and no evaluation (eval/).
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "models/sequence_classifier.h"
#include "models/tokenizer/tokenizer.h"
#include "trainers/config.h"
#include "trainers/data/dataset.h"

namespace lethe::trainers {

struct RunSettings;  // trainers/settings.h

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

// model.labels split at its commas: at least two names, none empty (errors name the recipe).
std::vector<std::string> classifier_labels(const RunSettings& settings);

// The classifier's input for one text: [BOS] + its tokens, cut to max_length.
std::vector<int64_t> classifier_ids(const tokenizer::Tokenizer& tok, const std::string& text,
                                    int64_t max_length);

// The labelled texts of `path` (data.format pku or jsonl, data.template, model.labels' count) as
// training samples: classifier_ids, no token target, class_label the text's label.
std::vector<data::Sample> classifier_samples(const std::string& path, const RunSettings& settings,
                                             const tokenizer::Tokenizer& tok, int64_t max_length);

// The classifier's input for `texts`: classifier_ids of each, right-padded with pad into ids and
// mask (i64 [texts, longest]).
void encode_texts(const tokenizer::Tokenizer& tok, const std::vector<const std::string*>& texts,
                  int64_t max_length, int64_t pad, Tensor& ids, Tensor& mask);

// Class probabilities [texts][labels] of `texts` (encoded as encode_texts does), batch_size at a
// time, all on this process (eval::classify shares them over the ranks of a run).
std::vector<std::vector<double>> class_probabilities(const models::SequenceClassifier& model,
                                                     const tokenizer::Tokenizer& tok,
                                                     const std::vector<std::string>& texts,
                                                     int64_t batch_size, int64_t max_length);

struct ClassifierRun {
  int64_t steps = 0;           // the run's steps (a resumed run: every step, before and after)
  int64_t steps_this_run = 0;  // steps run by this call
  std::vector<double> losses;  // per optimizer step (mean cross-entropy of the step's batch)
  double train_accuracy = 0;   // after training, on data.train (rank 0 under mpirun; NaN elsewhere)
};

// `lethe finetune` with model.head: classifier: the shared loop (checkpoints, resume, data
// parallel, held-out evaluation, output.keep: best) on data.train, writing output.dir
// (config.json, model.safetensors, the tokenizer files, run.json with the training accuracy).
// `stop_after` as TrainerOptions::stop_after (tests of resume).
ClassifierRun train_classifier(const Config& config, std::ostream& log, bool terminal,
                               int64_t stop_after = 0);

}  // namespace lethe::trainers
