// LlamaModel's files and bad input: save → reload gives the same logits in transformers' layout,
// load_causal_lm picks the family from config.json, weight names and no-decay groups follow
// transformers, initialisation follows _init_weights, and every bad input names what is wrong.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>

#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/io/json.h"
#include "engine/io/safetensors.h"
#include "engine/ops.h"
#include "models/causal_lm.h"
#include "models/llama/llama_model.h"
#include "models/sequence_classifier.h"
#include "tests/common/expect_error.h"
#include "tests/common/temp_dir.h"
#include "tests/llama/llama_test_util.h"

namespace fs = std::filesystem;

namespace lethe::models::test {
namespace {

using lethe::testing::expect_error;

std::pair<Tensor, Tensor> right_batch(const std::string& name) {
  const auto& b = llama_reference(name)["right"];
  return {ids_tensor(b["ids"], b["shape"]), ids_tensor(b["mask"], b["shape"])};
}

std::vector<double> logits_of(const CausalLM& m, const std::string& name) {
  const auto [ids, mask] = right_batch(name);
  NoGradGuard ng;
  return m.logits(ids, mask).to_double_vector();
}

// A copy of fixture `name` in a scratch dir with config.json's `key` set to `value`.
std::string with_config(const std::string& name, const std::string& key,
                        const nlohmann::json& value) {
  const std::string dir = lethe::testing::scratch_dir("llama", name + "_" + key);
  for (const auto& e : fs::directory_iterator(llama_fixture_dir(name)))
    fs::copy_file(e.path(), fs::path(dir) / e.path().filename(),
                  fs::copy_options::overwrite_existing);
  nlohmann::json c = io::read_json_file(dir + "/config.json");
  c[key] = value;
  std::ofstream(dir + "/config.json") << c.dump(2);
  return dir;
}

TEST(LlamaFiles, SaveReloadKeepsLogitsAndTransformersLayout) {
  for (const std::string& name : llama_fixture_names()) {
    SCOPED_TRACE(name);
    const LlamaModel model = LlamaModel::load(llama_fixture_dir(name));
    const std::string dir = lethe::testing::scratch_dir("llama", "save_" + name);
    model.save(dir);
    const LlamaModel back = LlamaModel::load(dir);
    EXPECT_EQ(logits_of(back, name), logits_of(model, name));
    // transformers' names: "model." + name, the untied head as lm_head.weight, no tied head.
    const io::SafetensorsFile f = io::SafetensorsFile::open(dir + "/model.safetensors");
    std::set<std::string> keys;
    for (const io::TensorInfo& t : f.tensors()) keys.insert(t.name);
    EXPECT_TRUE(keys.count("model.embed_tokens.weight"));
    EXPECT_TRUE(keys.count("model.layers.1.mlp.down_proj.weight"));
    EXPECT_TRUE(keys.count("model.norm.weight"));
    EXPECT_EQ(keys.count("lm_head.weight"), model.config().tie_word_embeddings ? 0u : 1u);
    EXPECT_EQ(keys.size(), model.parameters().names().size());
    const nlohmann::json c = io::read_json_file(dir + "/config.json");
    EXPECT_EQ(c["model_type"], model.config().model_type);
    EXPECT_EQ(c["architectures"][0].get<std::string>().ends_with("ForCausalLM"), true);
    // For `make_llama_fixtures.py --verify-saved $LETHE_TEST_KEEP/lethe_llama_saved/<name>`.
    lethe::testing::keep_copy(dir, "lethe_llama_saved/" + name);
  }
}

// "transformers loads what lethe saved", checked without torch: for the fixtures transformers
// wrote as one file, lethe's save in the same dtype has the same safetensors header (names,
// dtypes, shapes, offsets, metadata), the same bytes and the same config.json keys and values.
TEST(LlamaFiles, SaveEqualsTransformersSavePretrained) {
  for (const std::string name : {"llama_gqa", "llama_mqa_tied", "llama3_bias_hd"}) {
    SCOPED_TRACE(name);
    const std::string ref_dir = llama_fixture_dir(name);
    const io::SafetensorsFile ref = io::SafetensorsFile::open(ref_dir + "/model.safetensors");
    ASSERT_FALSE(ref.tensors().empty());
    const std::string out = lethe::testing::scratch_dir("llama", std::string("layout_") + name);
    LlamaModel::load(ref_dir).save(out, ref.tensors()[0].dtype);
    const io::SafetensorsFile got = io::SafetensorsFile::open(out + "/model.safetensors");
    EXPECT_EQ(got.metadata(), ref.metadata());
    ASSERT_EQ(got.tensors().size(), ref.tensors().size());
    for (size_t i = 0; i < ref.tensors().size(); ++i) {
      const io::TensorInfo& r = ref.tensors()[i];
      const io::TensorInfo& g = got.tensors()[i];
      SCOPED_TRACE(r.name);
      EXPECT_EQ(g.name, r.name);
      EXPECT_EQ(g.dtype, r.dtype);
      EXPECT_EQ(g.shape, r.shape);
      EXPECT_EQ(g.begin, r.begin);
      ASSERT_EQ(g.nbytes(), r.nbytes());
      EXPECT_EQ(std::memcmp(g.data, r.data, r.nbytes()), 0) << "tensor bytes differ";
    }
    const nlohmann::json rc = io::read_json_file(ref_dir + "/config.json");
    const nlohmann::json gc = io::read_json_file(out + "/config.json");
    for (const auto& [k, v] : rc.items()) {
      if (k == "transformers_version") continue;
      EXPECT_TRUE(gc.contains(k)) << "config.json key " << k;
      if (gc.contains(k)) EXPECT_EQ(gc[k], v) << "config.json key " << k;
    }
    for (const auto& [k, v] : gc.items()) EXPECT_TRUE(rc.contains(k)) << "extra key " << k;
  }
}

// Saved as bf16, the weights reload as their bf16 roundings: llama3_bias_hd is stored in bf16
// already, so the round trip is exact.
TEST(LlamaFiles, Bf16SaveOfBf16WeightsIsExact) {
  const LlamaModel model = LlamaModel::load(llama_fixture_dir("llama3_bias_hd"));
  const std::string dir = lethe::testing::scratch_dir("llama", "bf16");
  model.save(dir, DType::bf16);
  EXPECT_EQ(io::read_json_file(dir + "/config.json")["dtype"], "bfloat16");  // transformers 5's key
  EXPECT_EQ(logits_of(LlamaModel::load(dir), "llama3_bias_hd"), logits_of(model, "llama3_bias_hd"));
}

TEST(LlamaFiles, LoadCausalLmPicksTheFamilyFromModelType) {
  for (const std::string& name : llama_fixture_names()) {
    SCOPED_TRACE(name);
    EXPECT_EQ(model_family(llama_fixture_dir(name)), "llama");
    const auto lm = load_causal_lm(llama_fixture_dir(name));
    EXPECT_EQ(lm->family(), "llama");
    EXPECT_EQ(lm->parameters().names().size(), declared_parameters(llama_fixture_dir(name)).size());
  }
  const std::string dir = with_config("llama_gqa", "model_type", "gpt_neox");
  expect_error([&] { load_causal_lm(dir); }, {"config.json", "model_type", "gpt_neox"});
}

TEST(LlamaModel, NamesFollowTransformers) {
  const LlamaModel model = LlamaModel::load(llama_fixture_dir("llama3_bias_hd"));
  // Every linear layer is a parameter; the names are PEFT's targets.
  for (const std::string& l : model.linear_layers())
    EXPECT_TRUE(model.parameters().contains(l + ".weight")) << l;
  EXPECT_EQ(model.linear_layers().size(), 7u * 2u);
  // transformers' get_decay_parameter_names: biases and norms skip weight decay.
  EXPECT_TRUE(model.is_no_decay("layers.0.self_attn.q_proj.bias"));
  EXPECT_TRUE(model.is_no_decay("layers.0.mlp.up_proj.bias"));
  EXPECT_TRUE(model.is_no_decay("layers.1.input_layernorm.weight"));
  EXPECT_TRUE(model.is_no_decay("layers.1.post_attention_layernorm.weight"));
  EXPECT_TRUE(model.is_no_decay("norm.weight"));
  EXPECT_FALSE(model.is_no_decay("layers.0.self_attn.q_proj.weight"));
  EXPECT_FALSE(model.is_no_decay("embed_tokens.weight"));
  EXPECT_FALSE(model.is_no_decay("lm_head.weight"));
}

// Llama-3's configs have no pad token: batches are padded with the first EOS id (as
// open-unlearning sets pad = eos, and transformers' generate falls back to), else pad_token_id.
TEST(LlamaModel, BatchPadIdFallsBackToEos) {
  EXPECT_EQ(LlamaModel::load(llama_fixture_dir("llama3_bias_hd")).batch_pad_id(), 2);  // eos [2, 5]
  EXPECT_EQ(LlamaModel::load(llama_fixture_dir("llama_gqa")).batch_pad_id(), 0);  // pad_token_id 0
}

// _init_weights: N(0, initializer_range) for linear and embedding weights, 0 biases, 1 norms.
TEST(LlamaModel, InitWeightsFollowsTransformers) {
  LlamaModel model(load_llama_config(llama_fixture_dir("llama3_bias_hd")));
  model.init_weights(3);
  const auto w = model.param("layers.0.mlp.gate_proj.weight").to_double_vector();
  double s = 0, s2 = 0;
  for (double v : w) s += v, s2 += v * v;
  const double mean = s / w.size(), sd = std::sqrt(s2 / w.size() - mean * mean);
  EXPECT_NEAR(sd, 0.02, 0.004);
  EXPECT_NEAR(mean, 0.0, 0.004);
  for (double v : model.param("layers.1.post_attention_layernorm.weight").to_double_vector())
    EXPECT_EQ(v, 1.0);
  for (double v : model.param("layers.0.self_attn.q_proj.bias").to_double_vector())
    EXPECT_EQ(v, 0.0);
}

// LlamaForSequenceClassification: the score head on the last real token's hidden state, saved
// with transformers' architecture name and reloaded with the same class logits.
TEST(LlamaFiles, SequenceClassifierSavesAsLlamaForSequenceClassification) {
  const auto clf =
      SequenceClassifier::from_causal_lm(llama_fixture_dir("qwen2"), {"safe", "harmful"}, 7);
  const std::string dir = lethe::testing::scratch_dir("llama", "classifier");
  clf->save(dir);
  const nlohmann::json c = io::read_json_file(dir + "/config.json");
  EXPECT_EQ(c["architectures"][0], "Qwen2ForSequenceClassification");
  EXPECT_EQ(c["id2label"]["1"], "harmful");
  EXPECT_TRUE(SequenceClassifier::is_classifier_dir(dir));
  const auto back = SequenceClassifier::load(dir);
  const auto [ids, mask] = right_batch("qwen2");
  NoGradGuard ng;
  const auto a = clf->logits(ids, mask).to_double_vector();
  EXPECT_EQ(back->logits(ids, mask).to_double_vector(), a);
  EXPECT_EQ(a.size(), 3u * 2u);
  // For a check with transformers (docs/llama.md): AutoModelForSequenceClassification on the kept
  // copy gives these logits row by row.
  std::cout << "[llama classifier] logits";
  for (double v : a) std::cout << " " << v;
  std::cout << "\n";
  lethe::testing::keep_copy(dir, "lethe_llama_classifier");
}

TEST(LlamaErrors, MissingTensorNamesFileTensorAndShape) {
  const LlamaModel model = LlamaModel::load(llama_fixture_dir("llama_gqa"));
  const std::string dir = lethe::testing::scratch_dir("llama", "missing");
  model.save(dir);
  // The same checkpoint read with a config that wants biases it does not have.
  nlohmann::json c = io::read_json_file(dir + "/config.json");
  c["attention_bias"] = true;
  std::ofstream(dir + "/config.json") << c.dump(2);
  expect_error(
      [&] { LlamaModel::load(dir); },
      {"model.safetensors", "model.layers.0.self_attn.q_proj.bias", "missing", "shape [16]"});
}

TEST(LlamaErrors, UntiedConfigWithoutHeadIsRefused) {
  // qwen2 is tied (no lm_head.weight in its files); untying it must not invent a head.
  const std::string dir = with_config("qwen2", "tie_word_embeddings", false);
  expect_error([&] { LlamaModel::load(dir); },
               {"lm_head.weight", "missing", "tie_word_embeddings"});
}

TEST(LlamaErrors, WrongShapeNamesBothShapes) {
  const std::string dir = with_config("llama_gqa", "intermediate_size", 33);
  expect_error([&] { LlamaModel::load(dir); },
               {"mlp.gate_proj.weight", "has shape", "expects [33, "});
}

TEST(LlamaErrors, BadInputsAreNamed) {
  const LlamaModel model = LlamaModel::load(llama_fixture_dir("llama_gqa"));
  const auto [ids, mask] = right_batch("llama_gqa");
  NoGradGuard ng;
  const Tensor big = Tensor::from_vector(std::vector<int64_t>{1, 500}, {1, 2}, DType::i64);
  expect_error(
      [&] {
        model.forward(big, Tensor::ones({1, 2}, DType::i64));
      },
      {"token id 500", "[0, 1]", "vocabulary"});
  expect_error(
      [&] {
        model.forward(ids, Tensor::ones({1, 2}, DType::i64));
      },
      {"attention_mask", "must have shape"});
  const Tensor two = Tensor::from_vector(std::vector<int64_t>{1, 2}, {1, 2}, DType::i64);
  expect_error([&] { model.forward(two, two); }, {"attention_mask[0, 1] = 2"});
  LlamaForwardOptions o;
  o.positions = Tensor::zeros({1, 2}, DType::i64);
  expect_error([&] { model.forward(ids, mask, o); }, {"positions", "shape of ids"});
}

// Beyond the sliding window lethe's full attention would be another model: refused, named.
TEST(LlamaErrors, SequencesLongerThanTheSlidingWindowAreRefused) {
  const LlamaModel model = LlamaModel::load(with_config("mistral", "sliding_window", 4));
  const auto [ids, mask] = right_batch("mistral");
  NoGradGuard ng;
  expect_error([&] { model.forward(ids, mask); }, {"sliding_window 4", "tokens exceed"});
  EXPECT_NO_THROW(model.forward(ids.slice(1, 0, 4).contiguous(), mask.slice(1, 0, 4).contiguous()));
}

}  // namespace
}  // namespace lethe::models::test
