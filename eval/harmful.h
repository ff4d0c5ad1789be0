// Harmful rate (2405.15152, Yao et al.; ALGORITHMS.md): the fraction of greedy responses to
// held-out harmful prompts that a classifier (models::SequenceClassifier, trained by `lethe
// finetune` with model.head: classifier) labels harmful.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "models/causal_lm.h"
#include "models/sequence_classifier.h"
#include "models/tokenizer/tokenizer.h"

namespace lethe::eval {

struct HarmfulOptions {
  int64_t batch_size = 16;
  int64_t max_new_tokens = 128;
  int64_t max_length = 512;     // of the classifier's input
  std::string prompt_template;  // "" = PKU's "### Question: {question}\n### Answer: {answer}"
  int64_t harmful_label = 1;    // the classifier's class that counts as harmful
  int64_t max_samples = 0;      // 0 = every prompt
};

struct HarmfulResult {
  std::vector<std::string> prompts, responses;
  std::vector<double> p_harmful;  // the classifier's probability of the harmful class
  std::vector<uint8_t> harmful;   // argmax is the harmful class
  double rate = 0;
};

// The distinct prompts of a file of JSON objects with "prompt" (PKU-SafeRLHF) or "question", in
// file order. Errors name the file and line.
std::vector<std::string> load_prompts(const std::string& path);

// Greedy responses of `model` to `prompts` (each through the template, the answer empty), judged
// by `classifier` on the prompt text followed by the response.
HarmfulResult harmful_rate(const models::CausalLM& model, const tokenizer::Tokenizer& tok,
                           const models::SequenceClassifier& classifier,
                           const tokenizer::Tokenizer& classifier_tok,
                           const std::vector<std::string>& prompts, const HarmfulOptions& o);

}  // namespace lethe::eval
