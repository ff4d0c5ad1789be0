// LlamaModel: the Llama family's decoder (transformers' LlamaForCausalLM, Qwen2ForCausalLM and
// MistralForCausalLM: RMSNorm, RoPE, grouped-query attention, SwiGLU) on the engine's ops: forward,
// loss and backward through autograd, with an optional KV cache. File formats: llama_weights.h.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/parameters.h"
#include "engine/tensor.h"
#include "models/causal_lm.h"
#include "models/kv_cache.h"
#include "models/llama/llama_config.h"
#include "models/llama/llama_weights.h"

namespace lethe::models {

struct LlamaForwardOptions {
  bool training = false;  // config.attention_dropout on the attention probabilities; off when false
  uint64_t dropout_seed = 0;
  KvCache* cache = nullptr;  // when set: reads past keys/values ([B, KVH, *, D]) and appends
  // i64 [B, T]: each new token's rotary position. Undefined: HF's default, the cache positions
  // past .. past + T - 1 in every row, padding included (transformers' cache_position).
  Tensor positions;
};

struct LlamaLoadOptions {
  std::function<void(const std::string&)> warn;  // ignored checkpoint keys; default: stderr
};

class LlamaModel final : public CausalLM {
 public:
  // Parameters declared (zeros) and allocated on `device`; options.trainable decides which get
  // gradients (frozen ones allocate none).
  explicit LlamaModel(LlamaConfig config, Device device = Device::cpu(),
                      const ModelOptions& model_options = {});

  // config.json + weights of a HF directory (see load_llama_weights), f32 on `device`.
  static LlamaModel load(const std::string& dir, Device device = Device::cpu(),
                         const LlamaLoadOptions& options = {},
                         const ModelOptions& model_options = {});
  // config.json + model.safetensors as transformers' save_pretrained writes them.
  void save(const std::string& dir, DType dtype = DType::f32) const override;

  const LlamaConfig& config() const { return config_; }
  ParameterStore& parameters() override { return params_; }
  const ParameterStore& parameters() const override { return params_; }

  // ---- CausalLM
  Tensor hidden_states(const Tensor& ids, const Tensor& attention_mask,
                       const ForwardOptions& options = {}) const override;
  Tensor lm_head_weight() const override;
  // HF Trainer's no-decay names: biases and every norm weight.
  bool is_no_decay(const std::string& parameter_name) const override;
  std::vector<std::string> linear_layers() const override;
  int64_t vocab_size() const override { return config_.vocab_size; }
  int64_t max_positions() const override { return config_.max_position_embeddings; }
  int64_t pad_token_id() const override { return config_.pad_token_id.value_or(-1); }
  int64_t eos_token_id() const override { return config_.eos_token_id.value_or(-1); }
  std::string family() const override { return "llama"; }
  std::string hf_prefix() const override { return "model."; }
  // Greedy or sampled continuation through the KV cache; stops on any of the config's EOS ids and
  // pads finished rows with batch_pad_id(). Positions as HF's generate: cumsum(mask) - 1, 0 on
  // padding.
  GenerateResult generate(const Tensor& prompt_ids, const Tensor& prompt_mask,
                          const GenerateOptions& options) const override;
  // transformers' LlamaPreTrainedModel._init_weights: linear and embedding weights
  // N(0, initializer_range), biases 0, the padding row 0, RMSNorm weights 1.
  void init_weights(uint64_t seed) override;
  Tensor param(const std::string& name) const { return params_.get(name); }

  // ids, attention_mask: i64 [B, T] (mask 1 = token, 0 = padding; any side). With a cache the
  // mask is [B, T_past + T]. Returns logits f32 [B, T, V]. Padded query rows attend to nothing
  // and their outputs are not meaningful. Throws lethe::Error for ids outside [0, vocab_size),
  // shape mismatches, or a sequence longer than the sliding window.
  Tensor forward(const Tensor& ids, const Tensor& attention_mask,
                 const LlamaForwardOptions& options = {}) const;
  // The same up to the LM head (after the final norm): [B, T, hidden_size].
  Tensor hidden_states(const Tensor& ids, const Tensor& attention_mask,
                       const LlamaForwardOptions& options) const;

 private:
  LlamaConfig config_;
  ParameterStore params_;
  RopeFrequencies rope_;
  Tensor inv_freq_;  // rope_.inv_freq as f32 [head_dim / 2] on the model's device
};

}  // namespace lethe::models
