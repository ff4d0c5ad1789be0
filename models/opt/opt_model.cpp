// OptModel: OPT's forward pass (as transformers' modeling_opt.py), loss and token log-probs.
#include "models/opt/opt_model.h"

#include <cmath>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops.h"

namespace lethe::models {

OptModel::OptModel(OptConfig config, Device device, const ModelOptions& model_options)
    : config_(std::move(config)) {
  config_.validate("OptModel config");
  declare_opt_parameters(config_, params_);
  // OPTForSequenceClassification's score: Linear(word_embed_proj_dim, num_labels, bias=False).
  if (model_options.num_labels > 0)
    params_.add("score.weight", {model_options.num_labels, config_.word_embed_proj_dim});
  if (model_options.trainable) {
    for (const std::string& n : params_.names())
      if (!model_options.trainable(n)) params_.set_trainable(n, false);
  }
  params_.allocate(device);
}

OptModel OptModel::load(const std::string& dir, Device device, const OptLoadOptions& options,
                        const ModelOptions& model_options) {
  OptConfig config = load_opt_config(dir);
  check_opt_checkpoint(config, dir);  // shapes before any allocation
  OptModel model(std::move(config), Device::cpu(), model_options);
  load_opt_weights(model.config_, dir, model.params_, options);
  if (device != Device::cpu()) {
    OptModel moved(model.config_, device, model_options);
    NoGradGuard no_grad;
    moved.params_.flat_weights().copy_(model.params_.flat_weights());
    return moved;
  }
  return model;
}

void OptModel::save(const std::string& dir, DType dtype) const {
  save_opt_checkpoint(dir, config_, params_, dtype);
}

bool OptModel::is_no_decay(const std::string& name) const {
  auto ends_with = [&](const char* suffix) {
    const std::string s(suffix);
    return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
  };
  return ends_with(".bias") || name.find("layer_norm") != std::string::npos;
}

void OptModel::init_weights(uint64_t seed) {
  NoGradGuard ng;
  uint64_t offset = 0;
  for (const std::string& n : params_.names()) {
    Tensor p = params_.get(n);
    const bool norm = n.find("layer_norm") != std::string::npos;
    const bool bias = n.size() >= 5 && n.compare(n.size() - 5, 5, ".bias") == 0;
    if (norm && !bias) {
      p.fill_(1.0);
    } else if (bias) {
      p.fill_(0.0);
    } else {
      p.copy_(
          Tensor::randn(p.shape(), seed, 0.0, config_.init_std, DType::f32, p.device(), offset));
      offset += static_cast<uint64_t>(p.numel());
      if (n == "embed_tokens.weight" && config_.pad_token_id && *config_.pad_token_id >= 0 &&
          *config_.pad_token_id < config_.vocab_size)
        p.select(0, *config_.pad_token_id).fill_(0.0);
    }
  }
}

std::vector<std::string> OptModel::linear_layers() const {
  std::vector<std::string> out;
  for (int64_t i = 0; i < config_.num_hidden_layers; ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    for (const char* n : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                          "self_attn.out_proj", "fc1", "fc2"})
      out.push_back(p + n);
  }
  return out;
}

Tensor OptModel::hidden_states(const Tensor& ids, const Tensor& attention_mask,
                               const ForwardOptions& options) const {
  OptForwardOptions o;
  o.training = options.training;
  o.dropout_seed = options.dropout_seed;
  return hidden_states(ids, attention_mask, o);
}

Tensor OptModel::forward(const Tensor& ids, const Tensor& attention_mask,
                         const OptForwardOptions& options) const {
  return linear(hidden_states(ids, attention_mask, options), lm_head_weight());
}

Tensor OptModel::hidden_states(const Tensor& ids_in, const Tensor& mask_in,
                               const OptForwardOptions& options) const {
  const OptConfig& c = config_;
  OptKvCache* cache = options.cache;
  const ForwardInputs in =
      check_forward_inputs(ids_in, mask_in, cache ? cache->length() : 0, c.vocab_size, "OptModel");
  const int64_t B = in.batch, T = in.tokens, past = in.past, Tk = past + T;
  // transformers skips whole layers at random in training when layerdrop > 0; lethe always runs
  // every layer, so a training forward with it would silently be another model.
  LETHE_CHECK(!options.training || c.layerdrop == 0.0, "OptModel: config.json field layerdrop is ",
              c.layerdrop,
              "; training with layerdrop is not supported (every layer always runs): set it to 0");

  // Positions: cumsum(mask) * mask - 1, sliced to the new tokens, + 2.
  std::vector<int64_t> pos(static_cast<size_t>(B * T));
  for (int64_t b = 0; b < B; ++b) {
    int64_t run = 0;
    for (int64_t t = 0; t < Tk; ++t) {
      const int64_t m = in.mask[b * Tk + t];
      run += m;
      const int64_t p = run * m - 1;
      LETHE_CHECK(p < c.max_position_embeddings, "OptModel: row ", b, " has more than ",
                  c.max_position_embeddings, " tokens (max_position_embeddings)");
      if (t >= past) pos[b * T + (t - past)] = p + 2;
    }
  }

  // Ids and positions go to the embeddings as host tensors, checked above: the embedding op copies
  // them to the device without reading them back.
  const Device dev = device();
  const Tensor ids = Tensor::from_vector(in.ids, {B, T}, DType::i64);
  const Tensor key_mask = mask_in.to(dev).contiguous();
  const Tensor pos_ids = Tensor::from_vector(pos, {B, T}, DType::i64);
  auto P = [&](const std::string& n) { return params_.get(n); };
  auto opt = [&](const std::string& n) { return params_.contains(n) ? P(n) : Tensor(); };
  auto ln = [&](const Tensor& x, const std::string& n) {
    return layer_norm(x, opt(n + ".weight"), opt(n + ".bias"), 1e-5);
  };
  auto lin = [&](const Tensor& x, const std::string& n) {
    return apply_linear(n, x, P(n + ".weight"), opt(n + ".bias"));
  };

  const int64_t H = c.hidden_size, nh = c.num_attention_heads, hd = c.head_dim();
  const bool proj = c.word_embed_proj_dim != c.hidden_size;
  std::optional<int64_t> pad;
  if (c.pad_token_id && *c.pad_token_id >= 0 && *c.pad_token_id < c.vocab_size)
    pad = c.pad_token_id;

  Tensor h = embedding(P("embed_tokens.weight"), ids, pad);
  if (proj) h = linear(h, P("project_in.weight"));
  const Tensor positions = embedding(P("embed_positions.weight"), pos_ids);

  const double qscale = 1.0 / std::sqrt(static_cast<double>(hd));
  const bool pre = c.do_layer_norm_before;
  const double p_drop = options.training ? c.dropout : 0.0;
  const uint64_t site_stride = static_cast<uint64_t>(B * T * H);
  auto heads = [&](const Tensor& x) { return x.view({B, T, nh, hd}).permute({0, 2, 1, 3}); };

  if (cache) cache->prepare(c.num_hidden_layers, B, nh, hd, T, dev);
  // A sublayer's dropout, the residual add and the layer norm that follows run as one fused op
  // (add_layer_norm: the same numbers); `r` is the residual stream, `h` what the next sublayer
  // reads. Dropout site s (2i: attention output, 2i + 1: FFN output) draws counters
  // [s · site_stride, (s + 1) · site_stride).
  auto site = [&](int64_t s) {
    DropoutSpec d;
    if (options.training && p_drop > 0)
      d = {p_drop, options.dropout_seed, static_cast<uint64_t>(s) * site_stride};
    return d;
  };
  auto add_ln = [&](const Tensor& x, const Tensor& residual, const std::string& n, Tensor& r_out,
                    const DropoutSpec& drop = {}) {
    ResidualNorm rn = add_layer_norm(x, residual, opt(n + ".weight"), opt(n + ".bias"), 1e-5, drop);
    r_out = rn.sum;
    return rn.normed;
  };
  Tensor r;
  if (pre && c.num_hidden_layers > 0)
    h = add_ln(h, positions, "layers.0.self_attn_layer_norm", r);
  else
    h = add(h, positions);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    if (!pre) r = h;
    Tensor q = heads(scale(lin(h, p + "self_attn.q_proj"), qscale));
    Tensor k = heads(lin(h, p + "self_attn.k_proj"));
    Tensor v = heads(lin(h, p + "self_attn.v_proj"));
    if (cache) {  // the new positions go into the buffers; attention reads [0, past + T)
      const auto kv = cache->append(i, k, v);
      k = kv.first;
      v = kv.second;
    }
    // attention_dropout (0 in every released OPT): its counters follow all 2L residual sites.
    DropoutSpec attn_drop;
    if (options.training && c.attention_dropout > 0) {
      attn_drop.p = c.attention_dropout;
      attn_drop.seed = options.dropout_seed;
      attn_drop.offset = static_cast<uint64_t>(2 * c.num_hidden_layers) * site_stride +
                         static_cast<uint64_t>(i * B * nh * T * Tk);
    }
    Tensor a = attention(q, k, v, key_mask, /*causal=*/true, /*scale=*/1.0, attn_drop);
    a = a.permute({0, 2, 1, 3}).reshape({B, T, H});
    a = lin(a, p + "self_attn.out_proj");
    Tensor unused;
    if (pre)
      h = add_ln(a, r, p + "final_layer_norm", r, site(2 * i));
    else  // post-LN: the norm is the stream
      h = add_ln(a, r, p + "self_attn_layer_norm", unused, site(2 * i));

    if (!pre) r = h;
    h = lin(apply_linear_relu(p + "fc1", h, P(p + "fc1.weight"), opt(p + "fc1.bias")), p + "fc2");
    const DropoutSpec ffn_drop = site(2 * i + 1);
    if (!pre) {
      h = add_ln(h, r, p + "final_layer_norm", unused, ffn_drop);
    } else if (i + 1 < c.num_hidden_layers) {
      h = add_ln(h, r, "layers." + std::to_string(i + 1) + ".self_attn_layer_norm", r, ffn_drop);
    } else if (!c.remove_final_layer_norm) {
      h = add_ln(h, r, "final_layer_norm", r, ffn_drop);
    } else {
      h = add(dropout(h, ffn_drop.p, ffn_drop.p > 0, ffn_drop.seed, ffn_drop.offset), r);
    }
  }
  if (cache) cache->commit(T);
  if (pre && c.num_hidden_layers == 0 && !c.remove_final_layer_norm) h = ln(h, "final_layer_norm");
  if (proj) h = linear(h, P("project_out.weight"));
  return h;
}

}  // namespace lethe::models
