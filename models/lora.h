// LoRA adapters (Hu et al. 2021) on a CausalLM's named linear layers, in PEFT's layout: for each
// targeted layer y = x Wᵀ + b + (α/r) · dropout(x) Aᵀ Bᵀ with A [r, in] and B [out, r] in their own
// trainable ParameterStore while the base weights stay frozen. Attached through the model's
// LinearFn hook, so neither the model family nor the trainers change; saved and loaded as
// adapter_config.json + adapter_model.safetensors that peft reads; merged into the base weights
// for a full checkpoint.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/parameters.h"
#include "engine/tensor.h"
#include "models/causal_lm.h"

namespace lethe::models {

struct LoraConfig {
  int64_t r = 8;
  double alpha = 16;
  double dropout = 0.0;
  std::vector<std::string> targets = {"q_proj", "v_proj"};  // PEFT's default for OPT
  // "kaiming": PEFT's default (A Kaiming-uniform with a = √5, i.e. U(±1/√in); B zero);
  // "gaussian": A ~ N(0, 1/r²), B zero (PEFT's init_lora_weights="gaussian").
  std::string init = "kaiming";
  bool use_rslora = false;  // scaling α/√r instead of α/r
  std::string base_model;   // adapter_config.json's base_model_name_or_path
  double scaling() const;
};

// The linear-layer names LoRA can target in `model` (the last component of its linear_layers():
// q_proj, k_proj, v_proj, out_proj, fc1, fc2 for OPT).
std::vector<std::string> lora_target_names(const CausalLM& model);

class LoraAdapter {
 public:
  // A/B for every linear layer of `model` whose last name component is in config.targets
  // (unknown names are an error listing the valid ones; r >= 1, α > 0, dropout in [0, 1)),
  // initialised per config.init from `seed`.
  LoraAdapter(const CausalLM& model, LoraConfig config, uint64_t seed, bool trainable = true);

  // An adapter saved in PEFT's layout (by lethe or peft) for `model`. Errors name the file and
  // tensor: another base model (shape mismatch), a missing or unexpected tensor, options lethe
  // does not implement (DoRA, bias, fan_in_fan_out, layer patterns).
  static std::unique_ptr<LoraAdapter> load(const CausalLM& model, const std::string& dir,
                                           bool trainable = true);

  // The same adapter with its current values, frozen: the reference of NPO/KL terms when the
  // starting model carries an adapter.
  std::unique_ptr<LoraAdapter> frozen_copy() const;

  // The LinearFn computing targeted layers with their adapter (lethe::lora_linear) and the rest
  // with lethe::linear. The adapter must outlive the hook's use.
  LinearFn hook() const;
  // Dropout on the adapter's input follows this (set before each training forward).
  void set_training(bool training, uint64_t dropout_seed);

  ParameterStore& parameters() { return params_; }
  const ParameterStore& parameters() const { return params_; }
  const LoraConfig& config() const { return config_; }
  const std::vector<std::string>& layers() const { return layers_; }  // targeted, forward order

  // adapter_config.json + adapter_model.safetensors in `dir` (created if needed), atomically.
  void save(const std::string& dir) const;
  // W += scaling · B A for every targeted layer of `model` (the model the adapter was made for).
  void merge_into(CausalLM& model) const;

  // PEFT's saved name of a layer's A or B: "base_model.model." + the model's HF prefix + layer
  // (OPT: "base_model.model.model.decoder.<layer>.lora_A.weight"; Llama: "...model.model.<layer>...").
  std::string peft_name(const std::string& layer, bool a) const;

 private:
  LoraAdapter() = default;
  void declare(const CausalLM& model, bool trainable);
  LoraConfig config_;
  std::string hf_prefix_;  // the model's CausalLM::hf_prefix()
  std::vector<std::string> layers_;
  std::map<std::string, size_t> index_;       // layer → position (dropout site)
  std::map<std::string, Shape> base_shapes_;  // layer → [out, in]
  ParameterStore params_;  // "<layer>.lora_A.weight" [r, in], "<layer>.lora_B.weight" [out, r]
  bool training_ = false;
  uint64_t dropout_seed_ = 0;
};

}  // namespace lethe::models
