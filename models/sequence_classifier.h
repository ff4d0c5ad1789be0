// A sequence classifier: a CausalLM's final hidden state at each row's last real token, through a
// bias-free linear head — HuggingFace's OPTForSequenceClassification or
// LlamaForSequenceClassification (Qwen2…, Mistral…), saved in its layout (the backbone's names +
// score.weight, id2label in config.json) so transformers loads it. Used by the
// harmful-rate evaluation; trained by `lethe finetune` with model.head: classifier through the
// shared training loop.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/parameters.h"
#include "engine/tensor.h"
#include "models/causal_lm.h"

namespace lethe::models {

// The hidden state [B, E] of each row's last position with mask 1 (right or left padding), from
// hidden [B, T, E] and mask i64 [B, T]: what the score head reads. Differentiable in hidden; every
// row needs one real token (lethe::Error otherwise).
Tensor last_token_states(const Tensor& hidden, const Tensor& attention_mask);

class SequenceClassifier {
 public:
  // A classifier on `backbone`, which holds the head "score.weight" [labels.size(), E] in its own
  // store (built with ModelOptions::num_labels = labels.size() >= 2), so training the backbone's
  // store trains both. init_head: the head N(0, 0.02²) from `seed` (transformers' init of the
  // score layer for OPT's init_std and Llama's initializer_range, both 0.02 in released models);
  // else it is kept as it is.
  SequenceClassifier(std::unique_ptr<CausalLM> backbone, std::vector<std::string> labels,
                     uint64_t seed, bool init_head = true);

  // A saved classifier (config.json with id2label, model.safetensors with score.weight). Errors
  // name the directory and the field or tensor.
  static std::unique_ptr<SequenceClassifier> load(const std::string& dir,
                                                  Device device = Device::cpu(),
                                                  bool trainable = false);
  // A new classifier on the language model in `dir` (a fresh head), every parameter trainable.
  static std::unique_ptr<SequenceClassifier> from_causal_lm(const std::string& dir,
                                                            std::vector<std::string> labels,
                                                            uint64_t seed,
                                                            Device device = Device::cpu());
  // Whether `dir`'s config.json describes a saved classifier (id2label and a
  // *ForSequenceClassification architecture) rather than a language model.
  static bool is_classifier_dir(const std::string& dir);

  // Class logits f32 [B, labels] of right- or left-padded rows: the head applied to the hidden
  // state at each row's last position with mask 1. Every row needs one real token.
  Tensor logits(const Tensor& ids, const Tensor& attention_mask,
                const ForwardOptions& options = {}) const;

  // The backbone; its parameters() hold the head too.
  CausalLM& backbone() { return *backbone_; }
  const CausalLM& backbone() const { return *backbone_; }
  // The head's weight [labels, E], a view into the backbone's store.
  Tensor score_weight() const;
  const std::vector<std::string>& labels() const { return labels_; }

  // config.json (architectures: the family's *ForSequenceClassification, id2label, label2id) and
  // model.safetensors (the backbone's tensors + score.weight) in `dir`, each written atomically.
  void save(const std::string& dir, DType dtype = DType::f32) const;

 private:
  std::unique_ptr<CausalLM> backbone_;
  std::vector<std::string> labels_;
};

}  // namespace lethe::models
