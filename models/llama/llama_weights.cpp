// The Llama family's weight map: names/shapes, checkpoint loading and HF-style saving.
#include "models/llama/llama_weights.h"

#include <iostream>
#include <set>

#include "engine/error.h"
#include "engine/io/safetensors.h"

namespace lethe::models {

namespace {

const std::string kPrefix = "model.";
const std::string kHead = "lm_head.weight";

std::string config_dims(const LlamaConfig& c) {
  return "model_type " + c.model_type + ", vocab_size " + std::to_string(c.vocab_size) +
         ", hidden_size " + std::to_string(c.hidden_size) + ", num_attention_heads " +
         std::to_string(c.num_attention_heads) + ", num_key_value_heads " +
         std::to_string(c.num_key_value_heads) + ", head_dim " + std::to_string(c.head_dim) +
         ", intermediate_size " + std::to_string(c.intermediate_size);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Finds every parameter of `config` in `ckpt` and checks it (no data read).
std::vector<ResolvedTensor> resolve_llama_tensors(const LlamaConfig& config,
                                                  const io::SafetensorsIndex& ckpt) {
  const std::vector<std::string> names = ckpt.names();
  const std::set<std::string> keys(names.begin(), names.end());
  std::vector<ResolvedTensor> out;
  for (const ParamSpec& spec : llama_parameter_specs(config)) {
    std::string key;
    if (spec.name == kHead) {
      key = keys.count(kHead) ? kHead : "";
    } else {
      for (const std::string& k : {kPrefix + spec.name, spec.name})
        if (keys.count(k)) {
          key = k;
          break;
        }
      // A tied checkpoint may keep the head's name instead of the embedding's.
      if (key.empty() && spec.name == "embed_tokens.weight" && config.tie_word_embeddings &&
          keys.count(kHead))
        key = kHead;
    }
    const std::string wanted = spec.name == kHead ? kHead : kPrefix + spec.name;
    LETHE_CHECK(
        !key.empty(), ckpt.path(), ": tensor '", wanted, "' is missing; the config (",
        config_dims(config), ") needs it with shape ", shape_str(spec.shape),
        spec.name == kHead ? " (tie_word_embeddings is false: the LM head is its own weight)" : "");
    check_checkpoint_tensor(ckpt, key, spec, "Llama-family", config_dims(config));
    out.push_back({spec, key});
  }
  return out;
}

}  // namespace

std::vector<ParamSpec> llama_parameter_specs(const LlamaConfig& c) {
  const int64_t V = c.vocab_size, H = c.hidden_size, I = c.intermediate_size;
  const int64_t q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim;
  std::vector<ParamSpec> s;
  auto linear = [&](const std::string& name, int64_t out, int64_t in, bool bias) {
    s.push_back({name + ".weight", {out, in}});
    if (bias) s.push_back({name + ".bias", {out}});
  };
  s.push_back({"embed_tokens.weight", {V, H}});
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    linear(p + "self_attn.q_proj", q, H, c.qkv_bias());
    linear(p + "self_attn.k_proj", kv, H, c.qkv_bias());
    linear(p + "self_attn.v_proj", kv, H, c.qkv_bias());
    linear(p + "self_attn.o_proj", H, q, c.attention_bias);
    linear(p + "mlp.gate_proj", I, H, c.mlp_bias);
    linear(p + "mlp.up_proj", I, H, c.mlp_bias);
    linear(p + "mlp.down_proj", H, I, c.mlp_bias);
    s.push_back({p + "input_layernorm.weight", {H}});
    s.push_back({p + "post_attention_layernorm.weight", {H}});
  }
  s.push_back({"norm.weight", {H}});
  if (!c.tie_word_embeddings) s.push_back({kHead, {V, H}});
  return s;
}

void declare_llama_parameters(const LlamaConfig& config, ParameterStore& store) {
  for (const ParamSpec& spec : llama_parameter_specs(config)) store.add(spec.name, spec.shape);
}

void check_llama_checkpoint(const LlamaConfig& config, const std::string& path) {
  (void)resolve_llama_tensors(config, io::open_checkpoint(path));
}

void load_llama_weights(const LlamaConfig& config, const std::string& path, ParameterStore& store,
                        const std::function<void(const std::string&)>& warn_in) {
  io::SafetensorsIndex ckpt = io::open_checkpoint(path);
  const std::set<std::string> used =
      copy_checkpoint_tensors(ckpt, resolve_llama_tensors(config, ckpt), store);
  auto warn = warn_in ? warn_in : [](const std::string& msg) {
    std::cerr << "lethe: warning: " << msg << "\n";
  };
  for (const std::string& k : ckpt.names()) {
    if (used.count(k)) continue;
    if (ends_with(k, ".rotary_emb.inv_freq")) continue;  // a buffer, recomputed from the config
    // The tied head stored beside the embedding carries nothing new.
    if (k == kHead && config.tie_word_embeddings) continue;
    warn(ckpt.path() + ": ignoring checkpoint tensor '" + k + "' (not a parameter of this " +
         config.model_type + " model)");
  }
}

void save_llama_checkpoint(const std::string& dir, const LlamaConfig& config,
                           const ParameterStore& store, DType dtype) {
  write_checkpoint_tensors(
      dir, llama_parameter_specs(config), store, dtype,
      [](const std::string& name) { return name == kHead ? name : kPrefix + name; },
      "save_llama_checkpoint");
  LlamaConfig c = config;
  c.torch_dtype = torch_dtype_name(dtype);
  save_llama_config(c, dir + "/config.json");
}

}  // namespace lethe::models
