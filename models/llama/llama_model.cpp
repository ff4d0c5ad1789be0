// LlamaModel: the Llama family's forward pass (as transformers' modeling_llama.py, with Qwen2's
// q/k/v biases), its KV-cached generation and weight initialisation.
#include "models/llama/llama_model.h"

#include <cmath>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops.h"

namespace lethe::models {

namespace {

// transformers' generate: each token's position is the number of real tokens up to it minus one,
// 0 on padding; the positions of the last `new_tokens` columns of `mask` [B, L].
Tensor generation_positions(const Tensor& mask, int64_t new_tokens) {
  const int64_t B = mask.size(0), L = mask.size(1), T = new_tokens;
  const std::vector<int64_t> m = mask.to_int_vector();
  std::vector<int64_t> pos(static_cast<size_t>(B * T));
  for (int64_t b = 0; b < B; ++b) {
    int64_t seen = 0;
    for (int64_t t = 0; t < L; ++t) {
      seen += m[b * L + t];
      if (t >= L - T) pos[b * T + t - (L - T)] = m[b * L + t] ? seen - 1 : 0;
    }
  }
  return Tensor::from_vector(pos, {B, T}, DType::i64);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

LlamaModel::LlamaModel(LlamaConfig config, Device device, const ModelOptions& model_options)
    : config_(std::move(config)) {
  config_.validate("LlamaModel config");
  LETHE_CHECK(config_.head_dim % 2 == 0, "LlamaModel config: field 'head_dim': ", config_.head_dim,
              " must be even (RoPE rotates pairs)");
  declare_llama_parameters(config_, params_);
  // LlamaForSequenceClassification's score: Linear(hidden_size, num_labels, bias=False).
  if (model_options.num_labels > 0)
    params_.add("score.weight", {model_options.num_labels, config_.hidden_size});
  if (model_options.trainable) {
    for (const std::string& n : params_.names())
      if (!model_options.trainable(n)) params_.set_trainable(n, false);
  }
  params_.allocate(device);
  rope_ = config_.rope_frequencies();
  inv_freq_ =
      Tensor::from_vector(rope_.inv_freq, {static_cast<int64_t>(rope_.inv_freq.size())}, DType::f32)
          .to(device);
}

LlamaModel LlamaModel::load(const std::string& dir, Device device, const LlamaLoadOptions& options,
                            const ModelOptions& model_options) {
  LlamaConfig config = load_llama_config(dir);
  check_llama_checkpoint(config, dir);  // shapes before any allocation
  LlamaModel model(std::move(config), Device::cpu(), model_options);
  load_llama_weights(model.config_, dir, model.params_, options.warn);
  if (device != Device::cpu()) {
    LlamaModel moved(model.config_, device, model_options);
    NoGradGuard no_grad;
    moved.params_.flat_weights().copy_(model.params_.flat_weights());
    return moved;
  }
  return model;
}

void LlamaModel::save(const std::string& dir, DType dtype) const {
  save_llama_checkpoint(dir, config_, params_, dtype);
}

Tensor LlamaModel::lm_head_weight() const {
  return params_.get(config_.tie_word_embeddings ? "embed_tokens.weight" : "lm_head.weight");
}

bool LlamaModel::is_no_decay(const std::string& name) const {
  // transformers' get_decay_parameter_names: "bias", "layernorm", "rmsnorm", a component named
  // "norm", or one ending in "_norm".
  return name.find("bias") != std::string::npos || name.find("layernorm") != std::string::npos ||
         name.find("rmsnorm") != std::string::npos || name.rfind("norm.", 0) == 0 ||
         name.find(".norm.") != std::string::npos || name.find("_norm.") != std::string::npos;
}

std::vector<std::string> LlamaModel::linear_layers() const {
  std::vector<std::string> out;
  for (int64_t i = 0; i < config_.num_hidden_layers; ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    for (const char* n : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                          "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"})
      out.push_back(p + n);
  }
  return out;
}

void LlamaModel::init_weights(uint64_t seed) {
  NoGradGuard ng;
  uint64_t offset = 0;
  for (const std::string& n : params_.names()) {
    Tensor p = params_.get(n);
    if (ends_with(n, "norm.weight")) {
      p.fill_(1.0);
    } else if (ends_with(n, ".bias")) {
      p.fill_(0.0);
    } else {
      p.copy_(Tensor::randn(p.shape(), seed, 0.0, config_.initializer_range, DType::f32, p.device(),
                            offset));
      offset += static_cast<uint64_t>(p.numel());
      if (n == "embed_tokens.weight" && config_.pad_token_id && *config_.pad_token_id >= 0 &&
          *config_.pad_token_id < config_.vocab_size)
        p.select(0, *config_.pad_token_id).fill_(0.0);
    }
  }
}

Tensor LlamaModel::hidden_states(const Tensor& ids, const Tensor& attention_mask,
                                 const ForwardOptions& options) const {
  LlamaForwardOptions o;
  o.training = options.training;
  o.dropout_seed = options.dropout_seed;
  return hidden_states(ids, attention_mask, o);
}

Tensor LlamaModel::forward(const Tensor& ids, const Tensor& attention_mask,
                           const LlamaForwardOptions& options) const {
  return linear(hidden_states(ids, attention_mask, options), lm_head_weight());
}

Tensor LlamaModel::hidden_states(const Tensor& ids_in, const Tensor& mask_in,
                                 const LlamaForwardOptions& options) const {
  const LlamaConfig& c = config_;
  KvCache* cache = options.cache;
  const ForwardInputs in = check_forward_inputs(ids_in, mask_in, cache ? cache->length() : 0,
                                                c.vocab_size, "LlamaModel");
  const int64_t B = in.batch, T = in.tokens, past = in.past, Tk = past + T;
  // lethe attends over the whole sequence; with a sliding window that is the same model only while
  // the sequence fits in the window.
  LETHE_CHECK(!c.sliding_window || Tk <= *c.sliding_window, "LlamaModel: ", Tk,
              " tokens exceed config.json's sliding_window ", *c.sliding_window,
              "; sliding-window attention is not supported beyond the window");

  Tensor positions = options.positions;
  if (positions.defined()) {
    LETHE_CHECK(positions.dtype() == DType::i64 && positions.shape() == ids_in.shape(),
                "LlamaModel: positions ", positions.str(), " must be i64 with the shape of ids ",
                ids_in.str());
  } else {
    std::vector<int64_t> pos(static_cast<size_t>(B * T));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t) pos[b * T + t] = past + t;
    positions = Tensor::from_vector(pos, {B, T}, DType::i64);
  }

  const Device dev = device();
  const Tensor ids = Tensor::from_vector(in.ids, {B, T}, DType::i64);  // host: checked above
  const Tensor key_mask = mask_in.to(dev).contiguous();
  const Tensor pos = positions.to(dev).contiguous();
  auto P = [&](const std::string& n) { return params_.get(n); };
  auto opt = [&](const std::string& n) { return params_.contains(n) ? P(n) : Tensor(); };
  auto lin = [&](const Tensor& x, const std::string& n) {
    return apply_linear(n, x, P(n + ".weight"), opt(n + ".bias"));
  };
  auto norm = [&](const Tensor& x, const std::string& n) {
    return rms_norm(x, P(n + ".weight"), c.rms_norm_eps);
  };
  const int64_t nh = c.num_attention_heads, kvh = c.num_key_value_heads, hd = c.head_dim;
  auto heads = [&](const Tensor& x, int64_t n) {
    return x.view({B, T, n, hd}).permute({0, 2, 1, 3});
  };
  std::optional<int64_t> pad;
  if (c.pad_token_id && *c.pad_token_id >= 0 && *c.pad_token_id < c.vocab_size)
    pad = c.pad_token_id;
  if (cache) cache->prepare(c.num_hidden_layers, B, kvh, hd, T, dev);

  Tensor h = embedding(P("embed_tokens.weight"), ids, pad);
  const double scaling = 1.0 / std::sqrt(static_cast<double>(hd));
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    const Tensor x = norm(h, p + "input_layernorm");
    Tensor q = heads(lin(x, p + "self_attn.q_proj"), nh);
    Tensor k = heads(lin(x, p + "self_attn.k_proj"), kvh);
    Tensor v = heads(lin(x, p + "self_attn.v_proj"), kvh);
    q = rotary_embedding(q, pos, inv_freq_, rope_.attention_scaling);
    k = rotary_embedding(k, pos, inv_freq_, rope_.attention_scaling);
    if (cache) {  // the rotated keys go into the buffers; attention reads [0, past + T)
      const auto kv = cache->append(i, k, v);
      k = kv.first;
      v = kv.second;
    }
    DropoutSpec attn_drop;
    if (options.training && c.attention_dropout > 0)
      attn_drop = {c.attention_dropout, options.dropout_seed,
                   static_cast<uint64_t>(i * B * nh * T * Tk)};
    Tensor a = attention(q, k, v, key_mask, /*causal=*/true, scaling, attn_drop);
    a = a.permute({0, 2, 1, 3}).reshape({B, T, nh * hd});
    h = add(h, lin(a, p + "self_attn.o_proj"));
    const Tensor y = norm(h, p + "post_attention_layernorm");
    const Tensor gated =
        mul(silu(lin(y, p + "mlp.gate_proj")), lin(y, p + "mlp.up_proj"));  // SwiGLU
    h = add(h, lin(gated, p + "mlp.down_proj"));
  }
  if (cache) cache->commit(T);
  return norm(h, "norm");
}

GenerateResult LlamaModel::generate(const Tensor& prompt_ids, const Tensor& prompt_mask,
                                    const GenerateOptions& options) const {
  KvCache cache;
  if (prompt_ids.defined() && prompt_ids.dim() == 2)  // no regrowth while generating
    cache.reserve = prompt_ids.size(1) + std::max<int64_t>(options.max_new_tokens, 0);
  LlamaForwardOptions fo;
  fo.cache = &cache;
  auto step = [&](const Tensor& ids, const Tensor& mask) {
    fo.positions = generation_positions(mask, ids.size(1));
    return forward(ids, mask, fo);
  };
  // Finished rows get pad_token_id, else the first EOS id (transformers' generate does the same).
  return generate_with(prompt_ids, prompt_mask, options, config_.eos_token_ids, batch_pad_id(),
                       step);
}

}  // namespace lethe::models
