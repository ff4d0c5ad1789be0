// A resolved recipe's evaluation keys as typed settings, read from the Config once (settings_of):
// below lethe eval's and the loop hook's entry points (run_eval, tofu_step_metrics) evaluation
// reads these fields, never a string key. An optional path that is not set is "".
#pragma once

#include <cstdint>
#include <string>

#include "trainers/config.h"
#include "trainers/data/dataset.h"

namespace lethe::eval {

struct EvalSettings {
  std::string source;  // the recipe, for messages
  // model.*
  std::string model_path, device, tokenizer, adapter;
  bool bf16 = false;
  std::string output_dir;
  // How texts become samples (data.*, eval.format) and the batching of every pass.
  std::string prompt_template;
  int64_t max_length = 512;
  trainers::data::Tokenization tokenization = trainers::data::Tokenization::separate;
  trainers::data::Format text_format = trainers::data::Format::tofu;  // eval.format
  int64_t batch_size = 16, max_new_tokens = 200, max_samples = 0;
  // TOFU splits (the *_perturbed files) and forget quality's reference.
  std::string tofu_forget, tofu_retain, real_authors, world_facts, retain_reference;
  // The training loop's hook: eval.every_steps and eval.metrics: tofu.
  int64_t every_steps = 0;
  bool tofu_metrics = false;
  // Membership inference.
  std::string mia_forget, mia_holdout, mia_reference;
  double mia_k = 0.4;
  // MUSE.
  std::string verbmem, knowmem_forget, knowmem_retain, knowmem_forget_icl, knowmem_retain_icl,
      privleak_forget, privleak_holdout;
  double auc_retrain = 0.4772;
  int64_t verbmem_max_new_tokens = 128, knowmem_max_new_tokens = 32;
  // Harmful rate.
  std::string harmful_prompts, harmful_classifier, harmful_before;
  int64_t harmful_label = 1, harmful_max_new_tokens = 128;
  // Perplexity.
  std::string perplexity;

  bool any_tofu() const {
    return !tofu_forget.empty() || !tofu_retain.empty() || !real_authors.empty() ||
           !world_facts.empty();
  }
};

EvalSettings settings_of(const trainers::Config& config);

}  // namespace lethe::eval
