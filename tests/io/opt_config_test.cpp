// OPT config.json: defaults and the 350m-like shape as transformers' OPTConfig reads them
// (configs_expected.json), the hub's opt-125m layout, save/load round trip, and bad fields.
#include "models/opt/opt_config.h"

#include <nlohmann/json.hpp>

#include "engine/io/json.h"
#include "tests/io/test_util.h"

namespace lethe::io {
namespace {

using test::expect_error;
using test::fixture;
using namespace lethe::models;  // OptConfig, its reader and its writer

nlohmann::json expected(const std::string& file) {
  std::ifstream in(fixture("configs_expected.json"));
  return nlohmann::json::parse(in).at(file);
}

// Every field against what transformers' OPTConfig read from the same file.
void check_fields(const OptConfig& c, const nlohmann::json& e) {
  EXPECT_EQ(c.vocab_size, e["vocab_size"].get<int64_t>());
  EXPECT_EQ(c.hidden_size, e["hidden_size"].get<int64_t>());
  EXPECT_EQ(c.num_hidden_layers, e["num_hidden_layers"].get<int64_t>());
  EXPECT_EQ(c.ffn_dim, e["ffn_dim"].get<int64_t>());
  EXPECT_EQ(c.max_position_embeddings, e["max_position_embeddings"].get<int64_t>());
  EXPECT_EQ(c.do_layer_norm_before, e["do_layer_norm_before"].get<bool>());
  EXPECT_EQ(c.remove_final_layer_norm, e["_remove_final_layer_norm"].get<bool>());
  EXPECT_EQ(c.word_embed_proj_dim, e["word_embed_proj_dim"].get<int64_t>());
  EXPECT_EQ(c.dropout, e["dropout"].get<double>());
  EXPECT_EQ(c.attention_dropout, e["attention_dropout"].get<double>());
  EXPECT_EQ(c.num_attention_heads, e["num_attention_heads"].get<int64_t>());
  EXPECT_EQ(c.activation_function, e["activation_function"].get<std::string>());
  EXPECT_EQ(c.layerdrop, e["layerdrop"].get<double>());
  EXPECT_EQ(c.init_std, e["init_std"].get<double>());
  EXPECT_EQ(c.enable_bias, e["enable_bias"].get<bool>());
  EXPECT_EQ(c.layer_norm_elementwise_affine, e["layer_norm_elementwise_affine"].get<bool>());
  EXPECT_EQ(c.pad_token_id, e["pad_token_id"].get<int64_t>());
  EXPECT_EQ(c.bos_token_id, e["bos_token_id"].get<int64_t>());
  EXPECT_EQ(c.eos_token_id, e["eos_token_id"].get<int64_t>());
  EXPECT_EQ(c.tie_word_embeddings, e["tie_word_embeddings"].get<bool>());
  EXPECT_EQ(c.use_cache, e["use_cache"].get<bool>());
  EXPECT_EQ(c.torch_dtype, e["torch_dtype"].get<std::string>());
}

TEST(OptConfig, StructDefaultsMatchTransformers) {
  OptConfig c;  // as if every key were absent
  auto e = expected("config_default.json");
  e["torch_dtype"] = "";
  check_fields(c, e);
  EXPECT_EQ(c.head_dim(), 64);
  EXPECT_EQ(opt_config_from_json(nlohmann::json::object(), "{}").hidden_size, 768);
}

TEST(OptConfig, ReadsFilesWrittenByTransformers) {
  for (const char* f : {"config_default.json", "config_350m.json", "config_hub_125m.json"}) {
    SCOPED_TRACE(f);
    check_fields(load_opt_config(fixture(f)), expected(f));
  }
}

TEST(OptConfig, Opt350mShape) {
  OptConfig c = load_opt_config(fixture("config_350m.json"));
  EXPECT_EQ(c.hidden_size, 1024);  // facts from the OPT table
  EXPECT_EQ(c.ffn_dim, 4096);
  EXPECT_EQ(c.num_hidden_layers, 24);
  EXPECT_EQ(c.num_attention_heads, 16);
  EXPECT_EQ(c.head_dim(), 64);
  EXPECT_EQ(c.word_embed_proj_dim, 512);
  EXPECT_FALSE(c.do_layer_norm_before);
  EXPECT_EQ(c.torch_dtype, "float16");  // transformers 5 writes "dtype"
}

TEST(OptConfig, HubFileKeepsUnknownKeys) {
  OptConfig c = load_opt_config(fixture("config_hub_125m.json"));
  EXPECT_EQ(c.torch_dtype, "float16");
  EXPECT_EQ(c.extra.at("prefix"), "</s>");
  EXPECT_EQ(c.extra.at("_name_or_path"), "facebook/opt-125m");
  EXPECT_FALSE(c.extra.contains("hidden_size"));
  EXPECT_FALSE(c.extra.contains("architectures"));
}

TEST(OptConfig, DirectoryPathReadsConfigJson) {
  OptConfig c = load_opt_config(fixture("sharded"));
  EXPECT_EQ(c.hidden_size, 16);
  EXPECT_EQ(c.vocab_size, 64);
}

TEST(OptConfig, SaveLoadRoundTrip) {
  OptConfig c = load_opt_config(fixture("config_hub_125m.json"));
  c.hidden_size = 2560;
  c.num_attention_heads = 32;
  c.pad_token_id.reset();
  const std::string path = test::temp_dir("cfg") + "/config.json";
  save_opt_config(c, path);
  OptConfig d = load_opt_config(path);
  EXPECT_EQ(d.hidden_size, 2560);
  EXPECT_EQ(d.head_dim(), 80);
  EXPECT_FALSE(d.pad_token_id.has_value());
  EXPECT_EQ(d.torch_dtype, "float16");
  EXPECT_EQ(d.extra, c.extra);
  EXPECT_EQ(d.to_json(), c.to_json());
  // Independent look at the file: what from_pretrained needs to pick OPT.
  nlohmann::json j = nlohmann::json::parse(test::read_bytes(path));
  EXPECT_EQ(j["model_type"], "opt");
  EXPECT_EQ(j["architectures"], nlohmann::json::array({"OPTForCausalLM"}));
  EXPECT_EQ(j["dtype"], "float16");
  EXPECT_FALSE(j.contains("torch_dtype"));
  EXPECT_TRUE(j["pad_token_id"].is_null());
  EXPECT_EQ(j["prefix"], "</s>");
  EXPECT_EQ(j["_remove_final_layer_norm"], false);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  // With LETHE_TEST_KEEP=DIR, for the manual cross-check:
  //   python tools/fixtures/make_io_fixtures.py --verify-config DIR/lethe_config.json
  lethe::testing::keep_copy(path, "lethe_config.json");
}

void expect_bad_field(const nlohmann::json& patch, std::initializer_list<std::string> parts) {
  nlohmann::json j = nlohmann::json::parse(test::read_bytes(fixture("config_hub_125m.json")));
  j.merge_patch(patch);
  const std::string path = test::temp_dir("badcfg") + "/config.json";
  test::write_bytes(path, j.dump());
  expect_error([&] { load_opt_config(path); }, parts);
}

TEST(OptConfig, BadFieldsAreNamed) {
  expect_bad_field({{"num_attention_heads", 7}},
                   {"config.json: field 'hidden_size'", "768", "not divisible", "7"});
  expect_bad_field({{"hidden_size", 0}}, {"field 'hidden_size'", "positive"});
  expect_bad_field({{"num_attention_heads", -12}}, {"field 'num_attention_heads'", "positive"});
  expect_bad_field({{"ffn_dim", 0}}, {"field 'ffn_dim'"});
  expect_bad_field({{"vocab_size", -1}}, {"field 'vocab_size'"});
  expect_bad_field({{"num_hidden_layers", 0}}, {"field 'num_hidden_layers'"});
  expect_bad_field({{"max_position_embeddings", 0}}, {"field 'max_position_embeddings'"});
  expect_bad_field({{"word_embed_proj_dim", 0}}, {"field 'word_embed_proj_dim'"});
  expect_bad_field({{"activation_function", "gelu"}},
                   {"field 'activation_function'", "'gelu'", "relu"});
  expect_bad_field({{"model_type", "gpt2"}}, {"field 'model_type'", "gpt2"});
  expect_bad_field({{"hidden_size", "768"}}, {"field 'hidden_size'", "integer"});
  expect_bad_field({{"hidden_size", 768.5}}, {"field 'hidden_size'", "integer"});
  expect_bad_field({{"do_layer_norm_before", 1}},
                   {"field 'do_layer_norm_before'", "true or false"});
  expect_bad_field({{"dropout", "0.1"}}, {"field 'dropout'", "number"});
  expect_bad_field({{"dropout", 1.5}}, {"field 'dropout'", "[0, 1]"});
  expect_bad_field({{"activation_function", 3}}, {"field 'activation_function'", "string"});
  expect_bad_field({{"pad_token_id", 50272}}, {"field 'pad_token_id'", "outside the vocabulary"});
  expect_bad_field({{"eos_token_id", {2, 3}}}, {"field 'eos_token_id'", "lists"});
  expect_bad_field({{"torch_dtype", "int4"}}, {"field 'torch_dtype'", "int4"});
}

TEST(OptConfig, AcceptsIntegralFloatsAndNullIds) {
  nlohmann::json j = {{"model_type", "opt"},
                      {"hidden_size", 64.0},
                      {"num_attention_heads", 4},
                      {"pad_token_id", nullptr},
                      {"word_embed_proj_dim", nullptr}};
  OptConfig c = opt_config_from_json(j, "inline");
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.word_embed_proj_dim, 64);
  EXPECT_FALSE(c.pad_token_id.has_value());
}

TEST(OptConfig, FileErrors) {
  expect_error([] { load_opt_config("/nonexistent/config.json"); },
               {"/nonexistent/config.json", "does not exist"});
  const std::string dir = test::temp_dir("cfgerr");
  test::write_bytes(dir + "/config.json", "{\n  \"hidden_size\": 768,\n  oops\n}");
  expect_error([&] { load_opt_config(dir); }, {dir + "/config.json", "invalid JSON at line 3"});
  test::write_bytes(dir + "/config.json", "[]");
  expect_error([&] { load_opt_config(dir); }, {"not a JSON object"});
  OptConfig bad;
  bad.num_attention_heads = 5;
  expect_error([&] { save_opt_config(bad, dir + "/out.json"); },
               {dir + "/out.json", "field 'hidden_size'"});
  EXPECT_FALSE(std::filesystem::exists(dir + "/out.json"));
}

}  // namespace
}  // namespace lethe::io
