// OPT's config.json (transformers' OPTConfig): fields, defaults, validation, load and save.
// Must not build models or touch tensors (it builds alone on engine/io, for the fuzz target);
// errors name the file and the field.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace lethe::models {

// Defaults are transformers' OPTConfig defaults (configuration_opt.py), i.e. opt-125m's shape.
struct OptConfig {
  int64_t vocab_size = 50272;
  int64_t hidden_size = 768;
  int64_t num_hidden_layers = 12;
  int64_t ffn_dim = 3072;
  int64_t max_position_embeddings = 2048;
  bool do_layer_norm_before = true;
  bool remove_final_layer_norm = false;  // JSON key "_remove_final_layer_norm"
  int64_t word_embed_proj_dim = 768;     // absent or null in JSON: equals hidden_size
  double dropout = 0.1;
  double attention_dropout = 0.0;
  int64_t num_attention_heads = 12;
  std::string activation_function = "relu";
  double layerdrop = 0.0;
  double init_std = 0.02;
  bool enable_bias = true;
  bool layer_norm_elementwise_affine = true;
  std::optional<int64_t> pad_token_id = 1;  // null in JSON: nullopt
  std::optional<int64_t> bos_token_id = 2;
  std::optional<int64_t> eos_token_id = 2;
  std::string torch_dtype;  // "float16", "bfloat16", "float32", "float64"; "" when absent
  bool tie_word_embeddings = true;
  bool use_cache = true;
  // Every other key of the file (e.g. "_name_or_path", "prefix", "transformers_version"), kept so
  // save_opt_config writes it back.
  nlohmann::json extra = nlohmann::json::object();

  int64_t head_dim() const { return hidden_size / num_attention_heads; }

  // Throws lethe::Error "<source>: field '<name>': ..." for the first invalid field: sizes must
  // be positive and at most the limits below, the parameter count at most kMaxParameters.
  void validate(const std::string& source) const;

  // Parameters the config implies (the tied head counted once), computed in 128-bit integers so
  // no size overflows; meaningful for positive sizes.
  int64_t parameter_count() const;

  static constexpr int64_t kMaxVocabSize = int64_t{1} << 24;
  static constexpr int64_t kMaxWidth = int64_t{1} << 20;  // hidden, projection and ffn sizes
  static constexpr int64_t kMaxLayers = 4096;
  static constexpr int64_t kMaxPositions = int64_t{1} << 22;
  static constexpr int64_t kMaxParameters = int64_t{1} << 42;  // ~4.4e12

  // The config.json HF reads back: model_type "opt", architectures ["OPTForCausalLM"], all
  // fields above (dtype as "dtype", as transformers 5 writes it), then `extra`.
  nlohmann::ordered_json to_json() const;
};

// Parses and validates a config object. Wrong JSON types, unknown activation functions and a
// model_type other than "opt" are errors naming `source` and the field.
OptConfig opt_config_from_json(const nlohmann::json& j, const std::string& source);

// Reads config.json (or a directory holding one).
OptConfig load_opt_config(const std::string& path);

// Validates and writes to `path` via a temp file + rename.
void save_opt_config(const OptConfig& config, const std::string& path);

}  // namespace lethe::models
