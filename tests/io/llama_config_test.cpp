// The Llama family's config.json against transformers (tests/io/fixtures/llama_configs.json, from
// tools/fixtures/make_llama_config_fixtures.py): files save_pretrained wrote (transformers 5's
// rope_parameters) and the Hub's older layout (rope_theta + rope_scaling; Llama-3.2-1B-Instruct,
// Mistral-7B-v0.1, Qwen2-0.5B), read as transformers reads them — head_dim, kv heads, the
// parameter count of the model transformers builds, the rotary inv_freq — plus the save/load round
// trip and bad fields named.
#include "models/llama/llama_config.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/io/json.h"
#include "tests/io/test_util.h"

namespace lethe::io {
namespace {

using test::expect_error;
using test::fixture;
using namespace lethe::models;

const nlohmann::json& cases() {
  static const nlohmann::json j = [] {
    std::ifstream in(fixture("llama_configs.json"));
    return nlohmann::json::parse(in).at("cases");
  }();
  return j;
}

const nlohmann::json& named(const std::string& name) {
  for (const auto& c : cases())
    if (c.at("name") == name) return c;
  throw std::runtime_error("no fixture case " + name);
}

TEST(LlamaConfig, ReadsWhatTransformersReads) {
  ASSERT_EQ(cases().size(), 9u);
  for (const auto& c : cases()) {
    const std::string name = c.at("name");
    SCOPED_TRACE(name);
    const LlamaConfig cfg = llama_config_from_json(c.at("config"), name);
    const auto& e = c.at("expect");
    EXPECT_EQ(cfg.head_dim, e.at("head_dim").get<int64_t>());
    EXPECT_EQ(cfg.num_key_value_heads, e.at("num_key_value_heads").get<int64_t>());
    if (e.contains("parameter_count")) {
      EXPECT_EQ(cfg.parameter_count(), e.at("parameter_count").get<int64_t>());
    }
    const RopeFrequencies f = cfg.rope_frequencies();
    const auto want = e.at("inv_freq").get<std::vector<double>>();
    ASSERT_EQ(f.inv_freq.size(), want.size());
    // transformers takes float32 pow from torch, lethe the correctly rounded one: they may
    // differ in the last bit (docs/llama.md).
    for (size_t i = 0; i < want.size(); ++i)
      EXPECT_NEAR(f.inv_freq[i], want[i], 2.5e-7 * want[i]) << "inv_freq[" << i << "]";
    EXPECT_EQ(f.attention_scaling, e.at("attention_scaling").get<double>());
  }
}

TEST(LlamaConfig, HubFilesKeepTheirSpecifics) {
  const LlamaConfig llama =
      llama_config_from_json(named("Llama-3.2-1B-Instruct").at("config"), "l");
  EXPECT_EQ(llama.rope.type, "llama3");
  EXPECT_EQ(llama.rope.factor, 32.0);
  EXPECT_EQ(llama.rope.theta, 500000.0);
  EXPECT_TRUE(llama.tie_word_embeddings);
  EXPECT_FALSE(llama.qkv_bias());
  EXPECT_EQ(llama.eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
  EXPECT_EQ(llama.eos_token_id, 128001);
  EXPECT_EQ(llama.torch_dtype, "bfloat16");
  EXPECT_EQ(llama.extra.at("pretraining_tp"), 1);
  const LlamaConfig qwen = llama_config_from_json(named("Qwen2-0.5B").at("config"), "q");
  EXPECT_TRUE(qwen.qkv_bias());
  EXPECT_FALSE(qwen.attention_bias);
  EXPECT_FALSE(qwen.sliding_window) << "use_sliding_window is false";
  EXPECT_EQ(qwen.rope.theta, 1000000.0);
  const LlamaConfig mistral = llama_config_from_json(named("Mistral-7B-v0.1").at("config"), "m");
  EXPECT_EQ(mistral.sliding_window, 4096);
  EXPECT_FALSE(mistral.qkv_bias());
}

TEST(LlamaConfig, SaveLoadRoundTrip) {
  for (const auto& c : cases()) {
    const std::string name = c.at("name");
    SCOPED_TRACE(name);
    const LlamaConfig a = llama_config_from_json(c.at("config"), name);
    const LlamaConfig b = llama_config_from_json(parse_json(a.to_json().dump(), "saved"), "saved");
    EXPECT_EQ(b.to_json(), a.to_json());
    EXPECT_EQ(b.parameter_count(), a.parameter_count());
    EXPECT_EQ(b.rope_frequencies().inv_freq, a.rope_frequencies().inv_freq);
    EXPECT_EQ(b.eos_token_ids, a.eos_token_ids);
    EXPECT_EQ(b.sliding_window, a.sliding_window);
  }
}

// One field of the tiny llama config replaced, and what the error must name.
void expect_bad(const char* key, const nlohmann::json& value,
                std::initializer_list<std::string> fragments) {
  nlohmann::json j = named("llama tiny GQA untied").at("config");
  if (value.is_null() && std::string(key) == "rope_parameters")
    j.erase(key);
  else
    j[key] = value;
  expect_error([&] { llama_config_from_json(j, "config.json"); }, fragments);
}

TEST(LlamaConfig, BadFieldsAreNamed) {
  expect_bad("model_type", "gpt2", {"config.json", "model_type", "gpt2"});
  expect_bad("hidden_act", "gelu", {"hidden_act", "gelu"});
  expect_bad("num_key_value_heads", 3, {"num_key_value_heads", "3", "4"});
  expect_bad("head_dim", 7, {"head_dim", "odd"});
  expect_bad("vocab_size", 0, {"vocab_size", "positive"});
  expect_bad("rms_norm_eps", 0.0, {"rms_norm_eps"});
  expect_bad("rope_parameters",
             {{"rope_type", "dynamic"}, {"rope_theta", 10000.0}, {"factor", 2.0}},
             {"rope_parameters", "dynamic", "not supported"});
  expect_bad("rope_parameters", {{"rope_type", "yarn"}, {"rope_theta", 10000.0}},
             {"rope_parameters", "yarn"});
  expect_bad("rope_parameters",
             {{"rope_type", "linear"}, {"rope_theta", 10000.0}, {"factor", 2.0}, {"beta_fast", 32}},
             {"rope_parameters", "beta_fast"});
  expect_bad("rope_parameters", {{"rope_type", "default"}, {"rope_theta", "big"}},
             {"rope_parameters", "rope_theta", "expected a number"});
  expect_bad("eos_token_id", {1, "two"}, {"eos_token_id", "expected an integer"});
  expect_bad("eos_token_id", {1, 500}, {"eos_token_id", "500", "outside the vocabulary"});
  expect_bad("layer_types", {"full_attention", "sliding_attention"},
             {"layer_types", "sliding_window"});
  expect_bad("layer_types", {"full_attention", "chunked"}, {"layer_types", "chunked"});
  expect_bad("hidden_size", 1e30, {"hidden_size", "expected an integer"});
  // The older layout: rope_scaling's type named in its own field.
  nlohmann::json legacy = named("Mistral-7B-v0.1").at("config");
  legacy["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
  expect_error([&] { llama_config_from_json(legacy, "old.json"); },
               {"old.json", "rope_scaling", "dynamic"});
  legacy["rope_scaling"] = nullptr;
  legacy["sliding_window"] = 0;
  expect_error([&] { llama_config_from_json(legacy, "old.json"); }, {"sliding_window", "positive"});
}

}  // namespace
}  // namespace lethe::io
