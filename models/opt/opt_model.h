// OptModel: the OPT decoder (transformers' OPTForCausalLM) on the engine's ops: forward, loss and
// backward through autograd, with an optional KV cache. No file formats (opt_weights.h) here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/parameters.h"
#include "engine/tensor.h"
#include "models/causal_lm.h"
#include "models/kv_cache.h"
#include "models/opt/opt_config.h"
#include "models/opt/opt_weights.h"

namespace lethe::models {

// OPT fills the shared KV cache ([B, H, capacity, D] per layer).
using OptKvCache = KvCache;

struct OptForwardOptions {
  bool training =
      false;  // dropout (config.dropout after out_proj and fc2, config.attention_dropout
              // on the attention probabilities); off when false
  uint64_t dropout_seed = 0;
  OptKvCache* cache = nullptr;  // when set: reads past keys/values and appends the new ones
};

class OptModel final : public CausalLM {
 public:
  // Parameters declared (zeros) and allocated on `device`; options.trainable decides which get
  // gradients (frozen ones allocate none).
  explicit OptModel(OptConfig config, Device device = Device::cpu(),
                    const ModelOptions& model_options = {});

  // config.json + weights of a HF directory (see load_opt_weights), f32 on `device`.
  static OptModel load(const std::string& dir, Device device = Device::cpu(),
                       const OptLoadOptions& options = {}, const ModelOptions& model_options = {});
  // Writes config.json + model.safetensors as transformers does (see save_opt_checkpoint).
  void save(const std::string& dir, DType dtype = DType::f32) const override;

  const OptConfig& config() const { return config_; }
  ParameterStore& parameters() override { return params_; }
  const ParameterStore& parameters() const override { return params_; }

  // ---- CausalLM
  Tensor hidden_states(const Tensor& ids, const Tensor& attention_mask,
                       const ForwardOptions& options = {}) const override;
  Tensor lm_head_weight() const override { return params_.get("embed_tokens.weight"); }
  bool is_no_decay(const std::string& parameter_name) const override;
  std::vector<std::string> linear_layers() const override;
  int64_t vocab_size() const override { return config_.vocab_size; }
  int64_t max_positions() const override { return config_.max_position_embeddings; }
  int64_t pad_token_id() const override { return config_.pad_token_id.value_or(-1); }
  int64_t eos_token_id() const override { return config_.eos_token_id.value_or(-1); }
  std::string family() const override { return "opt"; }
  std::string hf_prefix() const override { return "model.decoder."; }
  GenerateResult generate(const Tensor& prompt_ids, const Tensor& prompt_mask,
                          const GenerateOptions& options) const override;
  // transformers' OPTPreTrainedModel._init_weights: linear and embedding weights N(0, init_std),
  // biases 0, the padding row 0, LayerNorm weight 1 and bias 0.
  void init_weights(uint64_t seed) override;
  // A parameter by its HF name without prefix, e.g. "layers.0.fc1.weight".
  Tensor param(const std::string& name) const { return params_.get(name); }

  // ids, attention_mask: i64 [B, T] (mask 1 = token, 0 = padding; any side). With a cache the
  // mask is [B, T_past + T]. Returns logits f32 [B, T, V]. Positions follow HF:
  // cumsum(mask) * mask - 1 (+2 offset into embed_positions); padded query rows attend to nothing
  // and their outputs are not meaningful. Throws lethe::Error for ids outside [0, vocab_size),
  // shape mismatches, or positions past max_position_embeddings.
  Tensor forward(const Tensor& ids, const Tensor& attention_mask,
                 const OptForwardOptions& options = {}) const;
  // The same up to the LM head: [B, T, word_embed_proj_dim].
  Tensor hidden_states(const Tensor& ids, const Tensor& attention_mask,
                       const OptForwardOptions& options) const;

 private:
  OptConfig config_;
  ParameterStore params_;
};

}  // namespace lethe::models
