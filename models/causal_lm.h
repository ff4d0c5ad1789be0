// CausalLM: what trainers and evaluation see of a language model — hidden states, the LM head,
// parameters, named linear layers and save/load — so they never touch a model family's internals.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/parameters.h"
#include "engine/tensor.h"
#include "models/generation.h"

namespace lethe::models {

// A linear layer's computation, y = x wᵀ + b. The default is lethe::linear; a wrapper (LoRA)
// replaces it for the layers it names and calls the default for the base weights.
// `name` is the layer's HF name without prefix and without ".weight" (e.g.
// "layers.0.self_attn.q_proj"); b may be undefined.
using LinearFn = std::function<Tensor(const std::string& name, const Tensor& x, const Tensor& w,
                                      const Tensor& b)>;

struct ForwardOptions {
  bool training = false;      // dropout as the model's config says; off when false
  uint64_t dropout_seed = 0;  // the dropout masks depend only on (seed, site, element)
};

// Which parameters get gradients: called with each parameter's name when the model is built.
using TrainablePredicate = std::function<bool(const std::string& name)>;
inline bool all_trainable(const std::string&) {
  return true;
}
inline bool none_trainable(const std::string&) {
  return false;
}

struct ModelOptions {
  // Frozen parameters allocate no gradient memory (a reference model: none_trainable).
  TrainablePredicate trainable = all_trainable;
  // > 0: a sequence-classification head "score.weight" [num_labels, width of the LM head's input]
  // declared after the family's own parameters, in the same store, so one optimizer trains both
  // (transformers' *ForSequenceClassification). The family neither loads nor saves it
  // (models::SequenceClassifier does).
  int64_t num_labels = 0;
};

class CausalLM {
 public:
  virtual ~CausalLM() = default;

  // ids, attention_mask: i64 [B, T] (1 = token, 0 = padding). Returns the final hidden states
  // [B, T, E] that the LM head maps to logits.
  virtual Tensor hidden_states(const Tensor& ids, const Tensor& attention_mask,
                               const ForwardOptions& options = {}) const = 0;
  // The LM head's weight [V, E] (tied models return the embedding); logits = hidden · Wᵀ.
  virtual Tensor lm_head_weight() const = 0;
  // logits f32 [B, T, V] = lm_head(hidden_states(...)).
  Tensor logits(const Tensor& ids, const Tensor& attention_mask,
                const ForwardOptions& options = {}) const;

  // HF's causal-LM loss: logits[:, t] against labels[:, t+1], ignore -100, mean over valid
  // tokens, through the fused head (the [B, T, V] logits are never held). The labels are shifted
  // (shift_labels), never the logits. Undefined labels: ids with -100 where attention_mask is 0
  // and at each row's first real token (HF's recipe for right/no padding; also right for left
  // padding, where it drops the term predicted from a pad position).
  Tensor loss(const Tensor& ids, const Tensor& attention_mask, const Tensor& labels = Tensor(),
              const ForwardOptions& options = {}) const;
  // log p(ids[b, t+1] | ids[b, ..t]) for t < T-1: f32 [B, T-1] on the CPU; 0 where either token
  // is padding. No gradients.
  Tensor token_logprobs(const Tensor& ids, const Tensor& attention_mask) const;

  virtual ParameterStore& parameters() = 0;
  virtual const ParameterStore& parameters() const = 0;
  Device device() const { return parameters().device(); }

  // Parameters that weight decay skips (HF Trainer's groups: biases and LayerNorm weights).
  virtual bool is_no_decay(const std::string& parameter_name) const = 0;

  // The named linear layers (HF names without ".weight"), in forward order, and the hook that
  // computes them (null = lethe::linear).
  virtual std::vector<std::string> linear_layers() const = 0;
  void set_linear_fn(LinearFn fn) { linear_fn_ = std::move(fn); }
  const LinearFn& linear_fn() const { return linear_fn_; }

  virtual int64_t vocab_size() const = 0;
  virtual int64_t max_positions() const = 0;
  virtual int64_t pad_token_id() const = 0;  // -1 when none
  virtual int64_t eos_token_id() const = 0;  // -1 when none
  // The id that fills padded positions of a batch: pad_token_id, else EOS (what open-unlearning
  // and transformers' generate fall back to: Llama-3 configs have no pad token), else 0. Padded
  // positions are masked, so it changes no result.
  int64_t batch_pad_id() const {
    return pad_token_id() >= 0 ? pad_token_id() : eos_token_id() >= 0 ? eos_token_id() : 0;
  }
  virtual std::string family() const = 0;  // "opt" or "llama"
  // The prefix of the decoder's parameter names in HF checkpoints ("model.decoder." for OPT,
  // "model." for the Llama family): what PEFT's adapter names put after "base_model.model.".
  virtual std::string hf_prefix() const = 0;

  // Fresh weights as transformers initialises the family (seeded): for training from scratch.
  virtual void init_weights(uint64_t seed) = 0;

  // Greedy or sampled continuation of LEFT-padded prompts through the KV cache (no gradients).
  virtual GenerateResult generate(const Tensor& prompt_ids, const Tensor& prompt_mask,
                                  const GenerateOptions& options) const = 0;

  // A HuggingFace-loadable checkpoint (config.json + model.safetensors) in `dir`; stored as
  // `dtype`.
  virtual void save(const std::string& dir, DType dtype = DType::f32) const = 0;

 protected:
  // y = x wᵀ + b through the hook when one is set.
  Tensor apply_linear(const std::string& name, const Tensor& x, const Tensor& w,
                      const Tensor& b) const;
  // relu(apply_linear(...)): one fused GEMM (linear_relu) when no hook is set.
  Tensor apply_linear_relu(const std::string& name, const Tensor& x, const Tensor& w,
                           const Tensor& b) const;

 private:
  LinearFn linear_fn_;
};

// What every family's forward checks on the host before any device work: ids i64 [B, T] with
// T > 0 and every id in [0, vocab_size); mask i64 [B, past + T] of 0s and 1s. Errors start with
// `who` ("OptModel", ...) and name the position. Returns both on the host.
struct ForwardInputs {
  int64_t batch = 0, tokens = 0, past = 0;
  std::vector<int64_t> ids, mask;  // [B, T] and [B, past + T], row-major
};
ForwardInputs check_forward_inputs(const Tensor& ids, const Tensor& mask, int64_t past,
                                   int64_t vocab_size, const char* who);

// HF's label shift without touching the logits: targets[b, t] = labels[b, t+1] for t < T-1 and
// -100 at t = T-1, so logits [B, T, V] pair with targets [B, T] position by position.
// labels: i64 [B, T] on any device; the result is on the CPU.
Tensor shift_labels(const Tensor& labels);

// The parameters (name, shape) the model in `dir` declares, read from its config.json alone (no
// weights): what a checkpoint that claims to be this model must hold.
std::vector<std::pair<std::string, Shape>> declared_parameters(const std::string& dir);

// The family of the model in `dir` (or of a config.json path) from config.json's model_type:
// "opt" for opt; "llama" for llama, qwen2 and mistral. Anything else is a lethe::Error naming the
// file and the field.
std::string model_family(const std::string& dir);

// Loads the model in `dir` (config.json's model_type picks the family). `warn` receives each
// checkpoint warning (an ignored tensor, ...); default: stderr.
std::unique_ptr<CausalLM> load_causal_lm(const std::string& dir, Device device = Device::cpu(),
                                         const ModelOptions& options = {},
                                         const std::function<void(const std::string&)>& warn = {});

}  // namespace lethe::models
