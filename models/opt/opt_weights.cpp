// OPT weight map: names/shapes, checkpoint loading (prefixes, aliases, dtypes) and HF-style saving.
#include "models/opt/opt_weights.h"

#include <cmath>
#include <filesystem>
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

bool is_float(DType t) {
  return t == DType::f32 || t == DType::f16 || t == DType::bf16 || t == DType::f64;
}

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

// One parameter and the checkpoint tensor that holds it.
struct ResolvedTensor {
  OptParamSpec spec;
  std::string key;
};

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
    const io::TensorInfo& info = ckpt.at(key);
    const io::SafetensorsFile& shard = ckpt.shard_of(key);
    LETHE_CHECK(info.shape == spec.shape, shard.path(), ": tensor '", key, "' has shape ",
                shape_str(info.shape), " but the config (", config_dims(config), ") expects ",
                shape_str(spec.shape));
    LETHE_CHECK(is_float(info.dtype), shard.path(), ": tensor '", key, "' has dtype ",
                dtype_name(info.dtype), "; OPT weights must be F16, BF16, F32 or F64");
    out.push_back({spec, key});
  }
  return out;
}

// The first non-finite element of a contiguous f32 parameter, or -1.
int64_t first_non_finite(const Tensor& t) {
  const float* p = t.data<float>();
  const int64_t n = t.numel();
  // x·0 is 0 for every finite x and NaN for NaN and ±Inf, so one vectorised pass tells whether
  // there is any; the element is looked for only then.
  float probe = 0;
#pragma omp simd reduction(+ : probe)
  for (int64_t i = 0; i < n; ++i) probe += p[i] * 0.0f;
  if (probe == 0) return -1;
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(p[i])) return i;
  return -1;
}

std::string non_finite_text(const Tensor& t, int64_t i) {
  const float v = t.data<float>()[i];
  return std::isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf";
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
  std::set<std::string> used;
  NoGradGuard no_grad;
  for (const auto& [spec, key] : resolved) {
    const io::TensorInfo& info = ckpt.at(key);
    const io::SafetensorsFile& shard = ckpt.shard_of(key);
    Tensor src = Tensor::from_borrowed(const_cast<void*>(info.data), info.shape, info.dtype,
                                       shard.keepalive());
    Tensor dst = store.get(spec.name);
    dst.copy_(src);
    // A NaN or Inf weight makes every output NaN ("null" log-probs, greedy token 0): refuse it
    // here, naming the tensor, instead of producing silent nonsense later.
    if (dst.device().is_cpu() && dst.dtype() == DType::f32 && dst.is_contiguous()) {
      const int64_t bad = first_non_finite(dst);
      LETHE_CHECK(bad < 0, shard.path(), ": tensor '", key, "' holds a non-finite value (",
                  non_finite_text(dst, bad), " at element ", bad,
                  "); the checkpoint is corrupt or was saved from a diverged run");
    }
    used.insert(key);
  }
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
  LETHE_CHECK(dtype == DType::f32 || dtype == DType::f16 || dtype == DType::bf16,
              "save_opt_checkpoint: dtype must be f32, f16 or bf16, got ", dtype_name(dtype));
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  LETHE_CHECK(!ec, dir, ": cannot create directory: ", ec.message());

  NoGradGuard no_grad;
  std::vector<Tensor> keep;
  std::vector<io::TensorToWrite> out;
  for (const auto& spec : opt_parameter_specs(config)) {
    LETHE_CHECK(store.contains(spec.name), "save_opt_checkpoint: parameter '", spec.name,
                "' is not in the store");
    Tensor t = store.get(spec.name).detach();
    LETHE_CHECK(t.shape() == spec.shape, "save_opt_checkpoint: parameter '", spec.name,
                "' has shape ", shape_str(t.shape()), ", the config expects ",
                shape_str(spec.shape));
    t = t.to(Device::cpu()).to(dtype).contiguous();
    keep.push_back(t);
    out.push_back({kHfPrefix + spec.name, dtype, t.shape(), t.data_ptr()});
  }
  io::write_safetensors(dir + "/model.safetensors", out, {{"format", "pt"}});

  OptConfig c = config;
  c.torch_dtype = dtype == DType::f32 ? "float32" : dtype == DType::f16 ? "float16" : "bfloat16";
  save_opt_config(c, dir + "/config.json");
}

}  // namespace lethe::models
