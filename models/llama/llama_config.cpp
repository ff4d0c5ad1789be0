// See llama_config.h.
#include "models/llama/llama_config.h"

#include <cmath>
#include <filesystem>
#include <limits>

#include "engine/error.h"
#include "engine/io/file_util.h"
#include "engine/io/json.h"
#include "models/config_fields.h"

namespace lethe::models {

namespace {

using config_fields::field;
using config_fields::FieldReader;

// Keys this struct owns; everything else goes to `extra`.
constexpr const char* kKnownKeys[] = {
    "model_type",
    "architectures",
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "hidden_act",
    "max_position_embeddings",
    "initializer_range",
    "rms_norm_eps",
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "tie_word_embeddings",
    "rope_theta",
    "rope_scaling",
    "rope_parameters",
    "attention_bias",
    "mlp_bias",
    "attention_dropout",
    "sliding_window",
    "use_sliding_window",
    "torch_dtype",
    "dtype",
    "use_cache",
};

const char* architecture(const std::string& model_type) {
  if (model_type == "qwen2") return "Qwen2ForCausalLM";
  if (model_type == "mistral") return "MistralForCausalLM";
  return "LlamaForCausalLM";
}

// transformers' defaults for each model_type (configuration_{llama,qwen2,mistral}.py).
LlamaConfig defaults_for(const std::string& model_type) {
  LlamaConfig c;
  c.model_type = model_type;
  if (model_type == "qwen2") {
    c.vocab_size = 151936;
    c.intermediate_size = 22016;
    c.max_position_embeddings = 32768;
    c.bos_token_id.reset();
    c.eos_token_id.reset();
  } else if (model_type == "mistral") {
    c.intermediate_size = 14336;
    c.num_key_value_heads = 8;
    c.max_position_embeddings = 131072;
    c.sliding_window = 4096;
  }
  return c;
}

// The rope rule from one dict: transformers 5's rope_parameters, or the older rope_scaling (whose
// theta is the top-level rope_theta). `key` names the dict in errors.
void read_rope(const nlohmann::json& d, const std::string& source, const char* key, LlamaRope& r) {
  LETHE_CHECK(d.is_object(), field(source, key), "expected an object or null, got ",
              io::json_excerpt(d));
  const std::string where = source + ": field '" + key + "'";
  FieldReader f(d, where);
  std::string type = r.type;
  if (d.contains("rope_type"))
    f.read("rope_type", type);
  else
    f.read("type", type);  // transformers 4's older key
  LETHE_CHECK(type == "default" || type == "linear" || type == "llama3", field(source, key),
              "rope type '", type,
              "' is not supported (lethe implements default, linear and llama3"
              "; dynamic, yarn and longrope are not)");
  r.type = type;
  f.read("rope_theta", r.theta);
  f.read("factor", r.factor);
  f.read("low_freq_factor", r.low_freq_factor);
  f.read("high_freq_factor", r.high_freq_factor);
  f.read("original_max_position_embeddings", r.original_max_position_embeddings);
  for (const auto& [k, v] : d.items()) {
    const bool known = k == "rope_type" || k == "type" || k == "rope_theta" || k == "factor" ||
                       k == "low_freq_factor" || k == "high_freq_factor" ||
                       k == "original_max_position_embeddings";
    LETHE_CHECK(known, field(source, key), "key '", k, "' is not supported for rope type '", type,
                "'");
  }
}

}  // namespace

void LlamaConfig::validate(const std::string& source) const {
  LETHE_CHECK(model_type == "llama" || model_type == "qwen2" || model_type == "mistral",
              field(source, "model_type"), "expected \"llama\", \"qwen2\" or \"mistral\", got \"",
              model_type, "\"");
  config_fields::check_size(source, "vocab_size", vocab_size, kMaxVocabSize);
  config_fields::check_size(source, "hidden_size", hidden_size, kMaxWidth);
  config_fields::check_size(source, "intermediate_size", intermediate_size, kMaxWidth);
  config_fields::check_size(source, "num_hidden_layers", num_hidden_layers, kMaxLayers);
  config_fields::check_size(source, "num_attention_heads", num_attention_heads, kMaxWidth);
  config_fields::check_size(source, "num_key_value_heads", num_key_value_heads, kMaxWidth);
  config_fields::check_size(source, "head_dim", head_dim, kMaxWidth);
  config_fields::check_size(source, "max_position_embeddings", max_position_embeddings,
                            kMaxPositions);
  LETHE_CHECK(num_attention_heads % num_key_value_heads == 0, field(source, "num_key_value_heads"),
              num_key_value_heads, " does not divide num_attention_heads ", num_attention_heads);
  LETHE_CHECK(head_dim % 2 == 0, field(source, "head_dim"), head_dim,
              " is odd (rotary embeddings pair the halves of each head)");
  LETHE_CHECK(num_attention_heads * head_dim <= kMaxWidth, field(source, "num_attention_heads"),
              num_attention_heads, " heads of ", head_dim, " are wider than ", kMaxWidth);
  LETHE_CHECK(parameter_count() <= kMaxParameters, source, ": the config describes ",
              parameter_count(), " parameters, more than the ", kMaxParameters, " lethe accepts");
  LETHE_CHECK(hidden_act == "silu", field(source, "hidden_act"), "unsupported activation '",
              hidden_act, "' (lethe supports \"silu\")");
  LETHE_CHECK(std::isfinite(rms_norm_eps) && rms_norm_eps > 0.0, field(source, "rms_norm_eps"),
              "must be a positive finite number, got ", rms_norm_eps);
  LETHE_CHECK(std::isfinite(initializer_range) && initializer_range >= 0.0,
              field(source, "initializer_range"), "must be a finite non-negative number, got ",
              initializer_range);
  LETHE_CHECK(attention_dropout >= 0.0 && attention_dropout <= 1.0,
              field(source, "attention_dropout"), "must be in [0, 1], got ", attention_dropout);
  const char* rope_key = "rope_parameters";
  LETHE_CHECK(std::isfinite(rope.theta) && rope.theta > 1.0, field(source, rope_key),
              "rope_theta must be a finite number above 1, got ", rope.theta);
  if (rope.type != "default")
    LETHE_CHECK(std::isfinite(rope.factor) && rope.factor >= 1.0, field(source, rope_key),
                "factor must be a finite number >= 1, got ", rope.factor);
  if (rope.type == "llama3") {
    LETHE_CHECK(std::isfinite(rope.low_freq_factor) && std::isfinite(rope.high_freq_factor) &&
                    rope.low_freq_factor > 0.0 && rope.high_freq_factor > rope.low_freq_factor,
                field(source, rope_key),
                "llama3 needs 0 < low_freq_factor < high_freq_factor, got ", rope.low_freq_factor,
                " and ", rope.high_freq_factor);
    LETHE_CHECK(rope.original_max_position_embeddings > 0 &&
                    rope.original_max_position_embeddings <= kMaxPositions,
                field(source, rope_key), "original_max_position_embeddings must be in [1, ",
                kMaxPositions, "], got ", rope.original_max_position_embeddings);
  }
  if (sliding_window)
    LETHE_CHECK(*sliding_window > 0, field(source, "sliding_window"),
                "must be positive or null, got ", *sliding_window);
  config_fields::check_token(source, "pad_token_id", pad_token_id, vocab_size);
  config_fields::check_token(source, "bos_token_id", bos_token_id, vocab_size);
  for (int64_t id : eos_token_ids)
    config_fields::check_token(source, "eos_token_id", id, vocab_size);
  config_fields::check_dtype(source, torch_dtype);
}

int64_t LlamaConfig::parameter_count() const {
  using I = __int128;
  const I V = vocab_size, H = hidden_size, F = intermediate_size, L = num_hidden_layers,
          Q = static_cast<I>(num_attention_heads) * head_dim,
          KV = static_cast<I>(num_key_value_heads) * head_dim;
  I attn = H * Q + 2 * H * KV + Q * H;
  if (qkv_bias()) attn += Q + 2 * KV;
  if (attention_bias) attn += H;
  I mlp = 3 * H * F;
  if (mlp_bias) mlp += 2 * F + H;
  I n = V * H + L * (attn + mlp + 2 * H) + H;
  if (!tie_word_embeddings) n += V * H;
  const I cap = std::numeric_limits<int64_t>::max();
  return static_cast<int64_t>(n > cap ? cap : n);
}

RopeFrequencies LlamaConfig::rope_frequencies() const {
  // transformers: inv_freq = 1 / (base ** (arange(0, dim, 2).float() / dim)) in float32, base a
  // Python float taken as float32; then the type's rule, every step in float32.
  RopeFrequencies out;
  const int64_t half = head_dim / 2;
  const float base = static_cast<float>(rope.theta);
  out.inv_freq.resize(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    const float e = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    const float p = static_cast<float>(std::pow(static_cast<double>(base), static_cast<double>(e)));
    out.inv_freq[static_cast<size_t>(i)] = 1.0f / p;
  }
  if (rope.type == "linear") {
    const float factor = static_cast<float>(rope.factor);
    for (float& f : out.inv_freq) f = f / factor;
  } else if (rope.type == "llama3") {
    const float factor = static_cast<float>(rope.factor);
    const double old_len = static_cast<double>(rope.original_max_position_embeddings);
    const float low_wavelen = static_cast<float>(old_len / rope.low_freq_factor);
    const float high_wavelen = static_cast<float>(old_len / rope.high_freq_factor);
    const float two_pi = static_cast<float>(2.0 * M_PI);
    const float low = static_cast<float>(rope.low_freq_factor);
    const float span = static_cast<float>(rope.high_freq_factor - rope.low_freq_factor);
    for (float& f : out.inv_freq) {
      const float wavelen = two_pi / f;
      const float scaled = wavelen > low_wavelen ? f / factor : f;
      const float smooth = (static_cast<float>(old_len) / wavelen - low) / span;
      const float smoothed = (1.0f - smooth) * scaled / factor + smooth * scaled;
      const bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
      f = medium ? smoothed : scaled;
    }
  }
  return out;
}

LlamaConfig llama_config_from_json(const nlohmann::json& j, const std::string& source) {
  LETHE_CHECK(j.is_object(), source, ": config is not a JSON object");
  FieldReader r(j, source);
  std::string model_type = "llama";
  r.read("model_type", model_type);
  LETHE_CHECK(model_type == "llama" || model_type == "qwen2" || model_type == "mistral",
              field(source, "model_type"), "expected \"llama\", \"qwen2\" or \"mistral\", got \"",
              model_type, "\"");
  LlamaConfig c = defaults_for(model_type);
  r.read("vocab_size", c.vocab_size);
  r.read("hidden_size", c.hidden_size);
  r.read("intermediate_size", c.intermediate_size);
  r.read("num_hidden_layers", c.num_hidden_layers);
  r.read("num_attention_heads", c.num_attention_heads);
  c.num_key_value_heads = model_type == "mistral" ? 8 : c.num_attention_heads;
  if (j.contains("num_key_value_heads") && !j["num_key_value_heads"].is_null())
    r.read("num_key_value_heads", c.num_key_value_heads);
  LETHE_CHECK(c.num_attention_heads > 0, field(source, "num_attention_heads"),
              "must be positive, got ", c.num_attention_heads);
  c.head_dim = c.hidden_size / c.num_attention_heads;
  if (j.contains("head_dim") && !j["head_dim"].is_null()) r.read("head_dim", c.head_dim);
  r.read("hidden_act", c.hidden_act);
  r.read("max_position_embeddings", c.max_position_embeddings);
  r.read("initializer_range", c.initializer_range);
  r.read("rms_norm_eps", c.rms_norm_eps);
  r.read("pad_token_id", c.pad_token_id);
  r.read("bos_token_id", c.bos_token_id);
  if (j.contains("eos_token_id") && j["eos_token_id"].is_array()) {
    const auto& ids = j["eos_token_id"];
    LETHE_CHECK(!ids.empty(), field(source, "eos_token_id"), "the list of ids is empty");
    c.eos_token_ids.clear();
    for (size_t i = 0; i < ids.size(); ++i) {
      int64_t id = 0;
      FieldReader(nlohmann::json{{"eos_token_id", ids[i]}}, source).read("eos_token_id", id);
      c.eos_token_ids.push_back(id);
    }
    c.eos_token_id = c.eos_token_ids.front();
  } else {
    r.read("eos_token_id", c.eos_token_id);
    c.eos_token_ids.clear();
    if (c.eos_token_id) c.eos_token_ids.push_back(*c.eos_token_id);
  }
  r.read("tie_word_embeddings", c.tie_word_embeddings);
  // RoPE: transformers 5 writes rope_parameters (theta inside); older files rope_theta and
  // rope_scaling (null or a dict).
  if (j.contains("rope_parameters") && !j["rope_parameters"].is_null()) {
    read_rope(j["rope_parameters"], source, "rope_parameters", c.rope);
  } else {
    r.read("rope_theta", c.rope.theta);
    if (j.contains("rope_scaling") && !j["rope_scaling"].is_null())
      read_rope(j["rope_scaling"], source, "rope_scaling", c.rope);
  }
  if (j.contains("attention_bias") && !j["attention_bias"].is_null())
    r.read("attention_bias", c.attention_bias);
  if (j.contains("mlp_bias") && !j["mlp_bias"].is_null()) r.read("mlp_bias", c.mlp_bias);
  r.read("attention_dropout", c.attention_dropout);
  // Sliding window: mistral's applies when set; qwen2's only with use_sliding_window.
  bool use_window = model_type == "mistral";
  if (model_type == "qwen2" && j.contains("use_sliding_window") &&
      !j["use_sliding_window"].is_null())
    r.read("use_sliding_window", use_window);
  if (use_window)
    r.read("sliding_window", c.sliding_window);
  else
    c.sliding_window.reset();
  if (j.contains("torch_dtype"))
    r.read("torch_dtype", c.torch_dtype);
  else
    r.read("dtype", c.torch_dtype);
  r.read("use_cache", c.use_cache);
  for (const auto& [key, value] : j.items()) {
    bool known = false;
    for (const char* k : kKnownKeys) known = known || key == k;
    if (!known) c.extra[key] = value;
  }
  // transformers 5's per-layer attention kinds: sliding layers need the window lethe enforces.
  if (j.contains("layer_types") && !j["layer_types"].is_null()) {
    const auto& types = j["layer_types"];
    LETHE_CHECK(types.is_array(), field(source, "layer_types"), "expected a list, got ",
                io::json_excerpt(types));
    for (const auto& t : types) {
      LETHE_CHECK(t == "full_attention" || t == "sliding_attention", field(source, "layer_types"),
                  "unsupported layer type ", io::json_excerpt(t),
                  " (full_attention or sliding_attention)");
      LETHE_CHECK(t == "full_attention" || c.sliding_window, field(source, "layer_types"),
                  "a sliding_attention layer needs a sliding_window");
    }
  }
  // Keys read only conditionally go back too, so a save keeps what the file said.
  if (!use_window && j.contains("sliding_window")) c.extra["sliding_window"] = j["sliding_window"];
  if (j.contains("use_sliding_window")) c.extra["use_sliding_window"] = j["use_sliding_window"];
  c.validate(source);
  return c;
}

nlohmann::ordered_json LlamaConfig::to_json() const {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  j["model_type"] = model_type;
  j["architectures"] = {architecture(model_type)};
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_key_value_heads;
  j["head_dim"] = head_dim;
  j["hidden_act"] = hidden_act;
  j["max_position_embeddings"] = max_position_embeddings;
  j["initializer_range"] = initializer_range;
  j["rms_norm_eps"] = rms_norm_eps;
  auto token = [&](const char* key, const std::optional<int64_t>& id) {
    j[key] = id ? nlohmann::ordered_json(*id) : nlohmann::ordered_json(nullptr);
  };
  token("pad_token_id", pad_token_id);
  token("bos_token_id", bos_token_id);
  if (eos_token_ids.size() > 1)
    j["eos_token_id"] = eos_token_ids;
  else
    token("eos_token_id", eos_token_id);
  j["tie_word_embeddings"] = tie_word_embeddings;
  nlohmann::ordered_json rp = nlohmann::ordered_json::object();
  rp["rope_type"] = rope.type;
  rp["rope_theta"] = rope.theta;
  if (rope.type != "default") rp["factor"] = rope.factor;
  if (rope.type == "llama3") {
    rp["low_freq_factor"] = rope.low_freq_factor;
    rp["high_freq_factor"] = rope.high_freq_factor;
    rp["original_max_position_embeddings"] = rope.original_max_position_embeddings;
  }
  j["rope_parameters"] = rp;
  j["attention_bias"] = attention_bias;
  j["mlp_bias"] = mlp_bias;
  j["attention_dropout"] = attention_dropout;
  if (model_type == "mistral")
    j["sliding_window"] =
        sliding_window ? nlohmann::ordered_json(*sliding_window) : nlohmann::ordered_json(nullptr);
  else if (model_type == "qwen2" && sliding_window) {
    j["use_sliding_window"] = true;
    j["sliding_window"] = *sliding_window;
  }
  if (!torch_dtype.empty()) j["dtype"] = torch_dtype;
  j["use_cache"] = use_cache;
  for (const auto& [key, value] : extra.items())
    if (!j.contains(key)) j[key] = nlohmann::ordered_json::parse(value.dump());
  return j;
}

LlamaConfig load_llama_config(const std::string& path) {
  std::string file = path;
  if (io::file_kind(path) == io::FileKind::directory) {
    file = (std::filesystem::path(path) / "config.json").string();
    LETHE_CHECK(io::file_kind(file) != io::FileKind::missing, path,
                ": no config.json in this directory");
  }
  return llama_config_from_json(io::read_json_file(file), file);
}

void save_llama_config(const LlamaConfig& config, const std::string& path) {
  config.validate(path);
  io::write_json_file(path, config.to_json());
}

}  // namespace lethe::models
