// A sequence classifier: a CausalLM's final hidden state at each row's last real token, through a
// bias-free linear head — HuggingFace's OPTForSequenceClassification, saved in its layout
// (model.decoder.* + score.weight, id2label in config.json) so transformers loads it. Used by the
// harmful-rate evaluation; trained by `lethe finetune` with method.name: classifier.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/parameters.h"
#include "engine/tensor.h"
#include "models/causal_lm.h"

namespace lethe::models {

class SequenceClassifier {
 public:
  // A classifier on `backbone` with a head of `labels.size()` classes (>= 2): weights N(0, 0.02²)
  // from `seed` (transformers' init of the score layer for OPT's init_std 0.02).
  SequenceClassifier(std::unique_ptr<CausalLM> backbone, std::vector<std::string> labels,
                     uint64_t seed, bool trainable = true);

  // A saved classifier (config.json with id2label, model.safetensors with score.weight). Errors
  // name the directory and the field or tensor.
  static std::unique_ptr<SequenceClassifier> load(const std::string& dir,
                                                  Device device = Device::cpu(),
                                                  bool trainable = false);
  // A new classifier on the language model in `dir` (a fresh head).
  static std::unique_ptr<SequenceClassifier> from_causal_lm(const std::string& dir,
                                                            std::vector<std::string> labels,
                                                            uint64_t seed,
                                                            Device device = Device::cpu());

  // Class logits f32 [B, labels] of right- or left-padded rows: the head applied to the hidden
  // state at each row's last position with mask 1. Every row needs one real token.
  Tensor logits(const Tensor& ids, const Tensor& attention_mask,
                const ForwardOptions& options = {}) const;

  CausalLM& backbone() { return *backbone_; }
  const CausalLM& backbone() const { return *backbone_; }
  ParameterStore& head() { return head_; }
  const ParameterStore& head() const { return head_; }
  const std::vector<std::string>& labels() const { return labels_; }

  // config.json (architectures OPTForSequenceClassification, id2label, label2id) and
  // model.safetensors (the backbone's tensors + score.weight) in `dir`, each written atomically.
  void save(const std::string& dir, DType dtype = DType::f32) const;

 private:
  std::unique_ptr<CausalLM> backbone_;
  ParameterStore head_;  // "score.weight" [labels, E]
  std::vector<std::string> labels_;
};

}  // namespace lethe::models
