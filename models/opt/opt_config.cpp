// See opt_config.h.
#include "models/opt/opt_config.h"

#include <sys/stat.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "engine/error.h"
#include "engine/io/file_util.h"
#include "engine/io/json.h"
#include "models/config_fields.h"

namespace lethe::models {

namespace {

// Keys this struct owns; everything else goes to `extra`. "dtype" is transformers 5's name for
// "torch_dtype"; "model_type" and "architectures" are fixed on save.
constexpr const char* kKnownKeys[] = {
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "ffn_dim",
    "max_position_embeddings",
    "do_layer_norm_before",
    "_remove_final_layer_norm",
    "word_embed_proj_dim",
    "dropout",
    "attention_dropout",
    "num_attention_heads",
    "activation_function",
    "layerdrop",
    "init_std",
    "enable_bias",
    "layer_norm_elementwise_affine",
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "torch_dtype",
    "dtype",
    "tie_word_embeddings",
    "use_cache",
    "model_type",
    "architectures",
};

using config_fields::field;
using config_fields::FieldReader;

}  // namespace

void OptConfig::validate(const std::string& source) const {
  // Upper bounds far above any released OPT (opt-175b: hidden 12288, ffn 49152, 96 layers,
  // vocab 50272, 2048 positions); the checkpoint's tensor shapes are compared with the config next.
  config_fields::check_size(source, "vocab_size", vocab_size, kMaxVocabSize);
  config_fields::check_size(source, "hidden_size", hidden_size, kMaxWidth);
  config_fields::check_size(source, "num_hidden_layers", num_hidden_layers, kMaxLayers);
  config_fields::check_size(source, "ffn_dim", ffn_dim, kMaxWidth);
  config_fields::check_size(source, "max_position_embeddings", max_position_embeddings,
                            kMaxPositions);
  config_fields::check_size(source, "word_embed_proj_dim", word_embed_proj_dim, kMaxWidth);
  config_fields::check_size(source, "num_attention_heads", num_attention_heads, hidden_size);
  LETHE_CHECK(parameter_count() <= kMaxParameters, source, ": the config describes ",
              parameter_count(), " parameters, more than the ", kMaxParameters, " lethe accepts");
  LETHE_CHECK(hidden_size % num_attention_heads == 0, field(source, "hidden_size"), hidden_size,
              " is not divisible by num_attention_heads ", num_attention_heads);
  LETHE_CHECK(activation_function == "relu", field(source, "activation_function"),
              "unsupported activation '", activation_function, "' (lethe supports \"relu\")");
  auto probability = [&](const char* key, double v) {
    LETHE_CHECK(v >= 0.0 && v <= 1.0, field(source, key), "must be in [0, 1], got ", v);
  };
  probability("dropout", dropout);
  probability("attention_dropout", attention_dropout);
  probability("layerdrop", layerdrop);
  LETHE_CHECK(init_std >= 0.0 && std::isfinite(init_std), field(source, "init_std"),
              "must be a finite non-negative number, got ", init_std);
  config_fields::check_token(source, "pad_token_id", pad_token_id, vocab_size);
  config_fields::check_token(source, "bos_token_id", bos_token_id, vocab_size);
  config_fields::check_token(source, "eos_token_id", eos_token_id, vocab_size);
  config_fields::check_dtype(source, torch_dtype);
}

int64_t OptConfig::parameter_count() const {
  using I = __int128;
  const I V = vocab_size, H = hidden_size, E = word_embed_proj_dim, F = ffn_dim,
          L = num_hidden_layers, P = max_position_embeddings;
  const I bias = enable_bias ? 1 : 0, ln = layer_norm_elementwise_affine ? 2 : 0;
  I n = V * E + (P + 2) * H;
  if (E != H) n += 2 * E * H;
  if (do_layer_norm_before && !remove_final_layer_norm) n += ln * H;
  n += L * (4 * (H * H + bias * H) + (F * H + bias * F) + (H * F + bias * H) + 2 * ln * H);
  const I cap = std::numeric_limits<int64_t>::max();
  return static_cast<int64_t>(n > cap ? cap : n);
}

OptConfig opt_config_from_json(const nlohmann::json& j, const std::string& source) {
  LETHE_CHECK(j.is_object(), source, ": config is not a JSON object");
  OptConfig c;
  FieldReader r(j, source);
  std::string model_type = "opt";
  r.read("model_type", model_type);
  LETHE_CHECK(model_type == "opt", field(source, "model_type"), "expected \"opt\", got \"",
              model_type, "\"");
  r.read("vocab_size", c.vocab_size);
  r.read("hidden_size", c.hidden_size);
  r.read("num_hidden_layers", c.num_hidden_layers);
  r.read("ffn_dim", c.ffn_dim);
  r.read("max_position_embeddings", c.max_position_embeddings);
  r.read("do_layer_norm_before", c.do_layer_norm_before);
  r.read("_remove_final_layer_norm", c.remove_final_layer_norm);
  c.word_embed_proj_dim = c.hidden_size;  // OPTConfig: None means hidden_size
  if (j.contains("word_embed_proj_dim") && !j["word_embed_proj_dim"].is_null())
    r.read("word_embed_proj_dim", c.word_embed_proj_dim);
  r.read("dropout", c.dropout);
  r.read("attention_dropout", c.attention_dropout);
  r.read("num_attention_heads", c.num_attention_heads);
  r.read("activation_function", c.activation_function);
  r.read("layerdrop", c.layerdrop);
  r.read("init_std", c.init_std);
  r.read("enable_bias", c.enable_bias);
  r.read("layer_norm_elementwise_affine", c.layer_norm_elementwise_affine);
  r.read("pad_token_id", c.pad_token_id);
  r.read("bos_token_id", c.bos_token_id);
  r.read("eos_token_id", c.eos_token_id);
  if (j.contains("torch_dtype"))
    r.read("torch_dtype", c.torch_dtype);
  else
    r.read("dtype", c.torch_dtype);
  r.read("tie_word_embeddings", c.tie_word_embeddings);
  r.read("use_cache", c.use_cache);
  for (const auto& [key, value] : j.items()) {
    bool known = false;
    for (const char* k : kKnownKeys) known = known || key == k;
    if (!known) c.extra[key] = value;
  }
  c.validate(source);
  return c;
}

nlohmann::ordered_json OptConfig::to_json() const {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  j["model_type"] = "opt";
  j["architectures"] = {"OPTForCausalLM"};
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["ffn_dim"] = ffn_dim;
  j["max_position_embeddings"] = max_position_embeddings;
  j["do_layer_norm_before"] = do_layer_norm_before;
  j["_remove_final_layer_norm"] = remove_final_layer_norm;
  j["word_embed_proj_dim"] = word_embed_proj_dim;
  j["dropout"] = dropout;
  j["attention_dropout"] = attention_dropout;
  j["num_attention_heads"] = num_attention_heads;
  j["activation_function"] = activation_function;
  j["layerdrop"] = layerdrop;
  j["init_std"] = init_std;
  j["enable_bias"] = enable_bias;
  j["layer_norm_elementwise_affine"] = layer_norm_elementwise_affine;
  auto token = [&](const char* key, const std::optional<int64_t>& id) {
    j[key] = id ? nlohmann::ordered_json(*id) : nlohmann::ordered_json(nullptr);
  };
  token("pad_token_id", pad_token_id);
  token("bos_token_id", bos_token_id);
  token("eos_token_id", eos_token_id);
  // Saved as "dtype", the key current transformers' save_pretrained writes (the layout lethe's
  // checkpoints follow key for key: tests/opt/opt_hf_layout_test.cpp). Both keys are read;
  // transformers 4.x ignores "dtype", and its torch_dtype="auto" then takes the weights' dtype.
  if (!torch_dtype.empty()) j["dtype"] = torch_dtype;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["use_cache"] = use_cache;
  for (const auto& [key, value] : extra.items())
    if (!j.contains(key)) j[key] = nlohmann::ordered_json::parse(value.dump());
  return j;
}

OptConfig load_opt_config(const std::string& path) {
  std::string file = path;
  if (io::file_kind(path) == io::FileKind::directory) {
    file = (std::filesystem::path(path) / "config.json").string();
    LETHE_CHECK(io::file_kind(file) != io::FileKind::missing, path,
                ": no config.json in this directory");
  }
  return opt_config_from_json(io::read_json_file(file), file);
}

void save_opt_config(const OptConfig& config, const std::string& path) {
  config.validate(path);
  io::write_json_file(path, config.to_json());
}

}  // namespace lethe::models
