// OPT weight map: names/shapes, checkpoint loading (prefixes, aliases, dtypes) and HF-style saving.
#include "models/opt/opt_weights.h"

#include <iostream>
#include <map>
#include <set>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/io/safetensors.h"

namespace lethe::models {

namespace {

const char* kHfPrefix = "model.decoder.";
const char* kFairseqPrefix = "decoder.";

std::string config_dims(const OptConfig& c) {
  std::string s = "vocab_size " + std::to_string(c.vocab_size) + ", hidden_size " +
                  std::to_string(c.hidden_size) + ", word_embed_proj_dim " +
                  std::to_string(c.word_embed_proj_dim) + ", ffn_dim " + std::to_string(c.ffn_dim) +
                  ", max_position_embeddings " + std::to_string(c.max_position_embeddings);
  return s;
}

}  // namespace

std::vector<OptParamSpec> opt_parameter_specs(const OptConfig& c) {
  const int64_t V = c.vocab_size, H = c.hidden_size, E = c.word_embed_proj_dim, F = c.ffn_dim;
  std::vector<OptParamSpec> s;
  s.push_back({"embed_tokens.weight", {V, E}});
  s.push_back({"embed_positions.weight", {c.max_position_embeddings + 2, H}});
  if (E != H) {
    s.push_back({"project_out.weight", {E, H}});
    s.push_back({"project_in.weight", {H, E}});
  }
  const bool affine = c.layer_norm_elementwise_affine;
  auto layer_norm = [&](const std::string& name) {
    if (!affine) return;
    s.push_back({name + ".weight", {H}});
    s.push_back({name + ".bias", {H}});
  };
  auto linear = [&](const std::string& name, int64_t out, int64_t in) {
    s.push_back({name + ".weight", {out, in}});
    if (c.enable_bias) s.push_back({name + ".bias", {out}});
  };
  if (c.do_layer_norm_before && !c.remove_final_layer_norm) layer_norm("final_layer_norm");
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    linear(p + "self_attn.k_proj", H, H);
    linear(p + "self_attn.v_proj", H, H);
    linear(p + "self_attn.q_proj", H, H);
    linear(p + "self_attn.out_proj", H, H);
    layer_norm(p + "self_attn_layer_norm");
    linear(p + "fc1", F, H);
    linear(p + "fc2", H, F);
    layer_norm(p + "final_layer_norm");
  }
  return s;
}

void declare_opt_parameters(const OptConfig& config, ParameterStore& store) {
  for (const auto& spec : opt_parameter_specs(config)) store.add(spec.name, spec.shape);
}

namespace {

// Finds every parameter of `config` in `ckpt` and checks its shape and dtype: a missing tensor, a
// wrong shape or a non-float dtype is a lethe::Error naming the file and the tensor. Allocates no
// tensor memory, so a config whose sizes the checkpoint does not back fails here, before any
// parameter is allocated.
std::vector<ResolvedTensor> resolve_opt_tensors(const OptConfig& config,
                                                const io::SafetensorsIndex& ckpt) {
  std::vector<std::string> names = ckpt.names();
  std::set<std::string> keys(names.begin(), names.end());
  std::map<std::string, std::string> aliases = ckpt.metadata();  // {"dropped": "kept"}
  aliases.erase("format");
  std::vector<ResolvedTensor> out;
  for (const auto& spec : opt_parameter_specs(config)) {
    const std::vector<std::string> candidates = {kHfPrefix + spec.name, kFairseqPrefix + spec.name,
                                                 spec.name};
    std::string key;
    for (const auto& c : candidates)
      if (keys.count(c)) {
        key = c;
        break;
      }
    if (key.empty())
      for (const auto& c : candidates) {
        auto it = aliases.find(c);
        if (it != aliases.end() && keys.count(it->second)) {
          key = it->second;
          break;
        }
      }
    if (key.empty() && spec.name == "embed_tokens.weight" && keys.count("lm_head.weight"))
      key = "lm_head.weight";
    LETHE_CHECK(!key.empty(), ckpt.path(), ": tensor '", kHfPrefix, spec.name, "' (or '",
                kFairseqPrefix, spec.name, "') is missing; the config (", config_dims(config),
                ") needs it with shape ", shape_str(spec.shape));
    check_checkpoint_tensor(ckpt, key, spec, "OPT", config_dims(config));
    out.push_back({spec, key});
  }
  return out;
}

}  // namespace

void check_opt_checkpoint(const OptConfig& config, const std::string& path) {
  (void)resolve_opt_tensors(config, io::open_checkpoint(path));
}

void load_opt_weights(const OptConfig& config, const std::string& path, ParameterStore& store,
                      const OptLoadOptions& options) {
  io::SafetensorsIndex ckpt = io::open_checkpoint(path);
  const std::vector<std::string> names = ckpt.names();
  const std::vector<ResolvedTensor> resolved = resolve_opt_tensors(config, ckpt);
  const std::set<std::string> used = copy_checkpoint_tensors(ckpt, resolved, store);
  const bool embed_found = used.count("lm_head.weight") == 0;
  auto warn = options.warn ? options.warn : [](const std::string& msg) {
    std::cerr << "lethe: warning: " << msg << "\n";
  };
  for (const auto& k : names) {
    if (used.count(k)) continue;
    // The tied head next to embed_tokens carries nothing new.
    if (k == "lm_head.weight" && embed_found) continue;
    warn(ckpt.path() + ": ignoring checkpoint tensor '" + k + "' (not a parameter of this OPT)");
  }
  if (!config.tie_word_embeddings)
    warn(ckpt.path() +
         ": config has tie_word_embeddings=false; lethe always ties the LM head to "
         "embed_tokens.weight");
}

void save_opt_checkpoint(const std::string& dir, const OptConfig& config,
                         const ParameterStore& store, DType dtype) {
  write_checkpoint_tensors(
      dir, opt_parameter_specs(config), store, dtype,
      [](const std::string& name) { return kHfPrefix + name; }, "save_opt_checkpoint");

  OptConfig c = config;
  c.torch_dtype = torch_dtype_name(dtype);
  save_opt_config(c, dir + "/config.json");
}

}  // namespace lethe::models
