// OptModel: the OPT decoder (transformers' OPTForCausalLM) on the engine's ops: forward, loss and
// backward through autograd, with an optional KV cache. No file formats (opt_weights.h) here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/io/opt_config.h"
#include "engine/parameters.h"
#include "engine/tensor.h"
#include "models/opt/opt_weights.h"

namespace lethe::models {

// Keys and values of every layer for incremental decoding: k[i], v[i] are [B, H, T_past, D].
// The attention mask passed to forward() covers past + new tokens.
struct OptKvCache {
  std::vector<Tensor> k, v;
  int64_t length() const { return k.empty() ? 0 : k[0].size(2); }
  void clear() {
    k.clear();
    v.clear();
  }
};

struct OptForwardOptions {
  bool training = false;  // dropout (config.dropout) after out_proj and fc2; off when false
  uint64_t dropout_seed = 0;
  OptKvCache* cache = nullptr;  // when set: reads past keys/values and appends the new ones
};

class OptModel {
 public:
  // Parameters declared (zeros) and allocated on `device`.
  explicit OptModel(io::OptConfig config, Device device = Device::cpu());

  // config.json + weights of a HF directory (see load_opt_weights), f32 on `device`.
  static OptModel load(const std::string& dir, Device device = Device::cpu(),
                       const OptLoadOptions& options = {});
  // Writes config.json + model.safetensors as transformers does (see save_opt_checkpoint).
  void save(const std::string& dir, DType dtype = DType::f32) const;

  const io::OptConfig& config() const { return config_; }
  Device device() const { return params_.device(); }
  ParameterStore& parameters() { return params_; }
  const ParameterStore& parameters() const { return params_; }
  // A parameter by its HF name without prefix, e.g. "layers.0.fc1.weight".
  Tensor param(const std::string& name) const { return params_.get(name); }

  // ids, attention_mask: i64 [B, T] (mask 1 = token, 0 = padding; any side). With a cache the
  // mask is [B, T_past + T]. Returns logits f32 [B, T, V]. Positions follow HF:
  // cumsum(mask) * mask - 1 (+2 offset into embed_positions); padded query rows attend to nothing
  // and their outputs are not meaningful. Throws lethe::Error for ids outside [0, vocab_size),
  // shape mismatches, or positions past max_position_embeddings.
  Tensor forward(const Tensor& ids, const Tensor& attention_mask,
                 const OptForwardOptions& options = {}) const;

  // HF's causal-LM loss: logits[:, :-1] against labels[:, 1:], ignore -100, mean over valid
  // tokens. Undefined labels: ids with -100 where attention_mask is 0 and at each row's first
  // real token (HF's recipe for right/no padding; also right for left padding).
  Tensor loss(const Tensor& ids, const Tensor& attention_mask, const Tensor& labels = Tensor(),
              const OptForwardOptions& options = {}) const;

  // log p(ids[b, t+1] | ids[b, ..t]) for t < T-1: f32 [B, T-1]; 0 where either token is padding.
  Tensor token_logprobs(const Tensor& ids, const Tensor& attention_mask) const;

 private:
  io::OptConfig config_;
  ParameterStore params_;
};

}  // namespace lethe::models
