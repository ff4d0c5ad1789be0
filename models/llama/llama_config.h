// The Llama family's config.json (transformers' LlamaConfig, Qwen2Config, MistralConfig: one
// decoder, three configurations): fields, per-family defaults, validation, the rotary
// frequencies, load and save. Builds alone on engine/io (for the fuzz target and the io tests);
// errors name the file and the field.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace lethe::models {

// RoPE's frequency rule (transformers' rope_parameters, or the older rope_scaling + rope_theta).
struct LlamaRope {
  std::string type = "default";  // "default", "linear" or "llama3"
  double theta = 10000.0;
  double factor = 1.0;  // linear, llama3
  // llama3 only:
  double low_freq_factor = 1.0, high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

// The rotary module's constants: what rotary_embedding takes.
struct RopeFrequencies {
  std::vector<float> inv_freq;  // [head_dim / 2]
  double attention_scaling = 1.0;
};

// Defaults are transformers' for model_type (llama: LlamaConfig; qwen2: Qwen2Config; mistral:
// MistralConfig), applied before the file's values.
struct LlamaConfig {
  std::string model_type = "llama";  // "llama", "qwen2" or "mistral"
  int64_t vocab_size = 32000;
  int64_t hidden_size = 4096;
  int64_t intermediate_size = 11008;
  int64_t num_hidden_layers = 32;
  int64_t num_attention_heads = 32;
  int64_t num_key_value_heads = 32;  // absent or null: num_attention_heads
  int64_t head_dim = 128;            // absent or null: hidden_size / num_attention_heads
  std::string hidden_act = "silu";
  int64_t max_position_embeddings = 2048;
  double initializer_range = 0.02;
  double rms_norm_eps = 1e-6;
  std::optional<int64_t> pad_token_id;
  std::optional<int64_t> bos_token_id = 1;
  std::optional<int64_t> eos_token_id = 2;  // the first of eos_token_ids
  // Every end-of-sequence id: Llama-3's instruct configs list several ([128001, 128008, 128009]);
  // a single id gives one entry, null none.
  std::vector<int64_t> eos_token_ids = {2};
  bool tie_word_embeddings = false;
  LlamaRope rope;
  bool attention_bias = false;  // q, k, v and o biases (llama); qwen2: q, k and v always
  bool mlp_bias = false;
  double attention_dropout = 0.0;
  // Sliding-window attention (mistral when sliding_window is set; qwen2 when use_sliding_window):
  // lethe attends over the whole sequence, which is the same for sequences no longer than the
  // window; the model refuses longer ones. nullopt: no window.
  std::optional<int64_t> sliding_window;
  std::string torch_dtype;  // "float16", "bfloat16", "float32", "float64"; "" when absent
  bool use_cache = true;
  // Every other key of the file, written back by to_json.
  nlohmann::json extra = nlohmann::json::object();

  // q, k, v carry biases (attention_bias, or qwen2); o_proj carries one only with attention_bias.
  bool qkv_bias() const { return attention_bias || model_type == "qwen2"; }

  // Throws lethe::Error "<source>: field '<name>': ..." for the first invalid field.
  void validate(const std::string& source) const;
  // Parameters the config implies (the tied head counted once), in 128-bit integers.
  int64_t parameter_count() const;
  // inv_freq and the attention scaling as transformers' rotary module computes them (float32 steps;
  // docs/llama.md says where the last bit may differ).
  RopeFrequencies rope_frequencies() const;

  static constexpr int64_t kMaxVocabSize = int64_t{1} << 24;
  static constexpr int64_t kMaxWidth = int64_t{1} << 20;
  static constexpr int64_t kMaxLayers = 4096;
  static constexpr int64_t kMaxPositions = int64_t{1} << 24;
  static constexpr int64_t kMaxParameters = int64_t{1} << 42;

  // The config.json transformers reads back: model_type, architectures, the fields above (rope as
  // transformers 5's rope_parameters), then `extra`.
  nlohmann::ordered_json to_json() const;
};

// Parses and validates a config object of model_type llama, qwen2 or mistral. Unsupported
// settings (another activation, rope types other than default/linear/llama3, a sliding window
// that is not a positive integer) are errors naming `source` and the field.
LlamaConfig llama_config_from_json(const nlohmann::json& j, const std::string& source);

// Reads config.json (or a directory holding one).
LlamaConfig load_llama_config(const std::string& path);

// Validates and writes to `path` via a temp file + rename.
void save_llama_config(const LlamaConfig& config, const std::string& path);

}  // namespace lethe::models
