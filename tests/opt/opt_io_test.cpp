// OPT checkpoints: the parameter list, save → reload round trips (HF layout), and bad input
// (shape mismatches, missing tensors, missing config.json, non-float tensors, bad ids).
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/io/safetensors.h"
#include "models/opt/opt_model.h"
#include "tests/common/paths.h"
#include "tests/opt/opt_test_util.h"

namespace lethe::models::test {
namespace {

namespace fs = std::filesystem;

void expect_contains(const std::string& s, const std::string& part) {
  EXPECT_NE(s.find(part), std::string::npos) << "'" << part << "' not in: " << s;
}

// The fixture's directory copied to a temp dir (so tests can break it).
std::string copy_fixture(const std::string& name) {
  std::string dir = temp_dir(name);
  for (const auto& e : fs::directory_iterator(fixture_dir(name)))
    fs::copy_file(e.path(), fs::path(dir) / e.path().filename());
  return dir;
}

// Rewrites dir/model.safetensors through `edit` of its tensor list (data stays in the mapping).
void rewrite_weights(const std::string& dir,
                     const std::function<void(std::vector<io::TensorToWrite>&)>& edit) {
  io::SafetensorsFile f = io::SafetensorsFile::open(dir + "/model.safetensors");
  std::vector<io::TensorToWrite> ts;
  for (const auto& t : f.tensors()) ts.push_back({t.name, t.dtype, t.shape, t.data});
  edit(ts);
  io::write_safetensors(dir + "/model.safetensors", ts, {{"format", "pt"}});
}

TEST(OptWeights, ParameterCountOfOpt125mAnd350m) {
  // OPT.md: opt-125m has 125,239,296 parameters (tied head counted once).
  models::OptConfig c;
  int64_t n = 0;
  for (const auto& s : opt_parameter_specs(c)) n += shape_numel(s.shape);
  EXPECT_EQ(n, 125239296);
  models::OptConfig c350 =
      models::load_opt_config(lethe::testing::source_dir() + "/tests/io/fixtures/config_350m.json");
  int64_t n350 = 0;
  bool has_final = false;
  for (const auto& s : opt_parameter_specs(c350)) {
    n350 += shape_numel(s.shape);
    has_final = has_final || s.name == "final_layer_norm.weight";
  }
  EXPECT_EQ(n350, 331196416);  // facebook/opt-350m, as transformers counts it
  EXPECT_FALSE(has_final);
}

class OptRoundTrip : public ::testing::TestWithParam<std::string> {};

TEST_P(OptRoundTrip, SaveReloadIsExactAndHfShaped) {
  const std::string name = GetParam();
  OptModel a = OptModel::load(fixture_dir(name));
  const std::string dir = lethe::testing::scratch_dir("opt", "saved_" + name);
  a.save(dir);
  std::ofstream(dir + "/lethe_fixture.txt") << name << "\n";
  // For `make_opt_fixtures.py --verify-saved $LETHE_TEST_KEEP/lethe_opt_saved/<name>`.
  lethe::testing::keep_copy(dir, "lethe_opt_saved/" + name);

  io::SafetensorsFile f = io::SafetensorsFile::open(dir + "/model.safetensors");
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.tensors().size(), a.parameters().names().size());
  for (const auto& t : f.tensors()) {
    EXPECT_EQ(t.name.rfind("model.decoder.", 0), 0u) << t.name;
    EXPECT_EQ(t.dtype, DType::f32);
  }
  EXPECT_FALSE(fs::exists(dir + "/model.safetensors.tmp"));
  EXPECT_FALSE(fs::exists(dir + "/config.json.tmp"));

  std::vector<std::string> warnings;
  OptLoadOptions o;
  o.warn = [&](const std::string& w) { warnings.push_back(w); };
  OptModel b = OptModel::load(dir, Device::cpu(), o);
  EXPECT_TRUE(warnings.empty());
  models::OptConfig want = a.config();
  want.torch_dtype = "float32";
  EXPECT_EQ(b.config().to_json(), want.to_json());
  for (const auto& n : a.parameters().names())
    EXPECT_EQ(a.param(n).to_double_vector(), b.param(n).to_double_vector()) << n;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, OptRoundTrip, ::testing::ValuesIn(fixture_names()),
                         [](const auto& info) { return info.param; });

TEST(OptWeights, SaveAsF16AndBf16) {
  OptModel a = OptModel::load(fixture_dir("f16"));  // values are exactly representable in f16
  const std::string dir = temp_dir("save_f16");
  a.save(dir, DType::f16);
  io::SafetensorsFile f = io::SafetensorsFile::open(dir + "/model.safetensors");
  for (const auto& t : f.tensors()) EXPECT_EQ(t.dtype, DType::f16) << t.name;
  EXPECT_EQ(models::load_opt_config(dir).torch_dtype, "float16");
  OptModel b = OptModel::load(dir);
  for (const auto& n : a.parameters().names())
    EXPECT_EQ(a.param(n).to_double_vector(), b.param(n).to_double_vector()) << n;

  OptModel c = OptModel::load(fixture_dir("lm_head_alias"));  // bf16-exact values
  const std::string dir2 = temp_dir("save_bf16");
  c.save(dir2, DType::bf16);
  OptModel d = OptModel::load(dir2);
  for (const auto& n : c.parameters().names())
    EXPECT_EQ(c.param(n).to_double_vector(), d.param(n).to_double_vector()) << n;
  EXPECT_THROW(c.save(temp_dir("save_i64"), DType::i64), Error);
}

TEST(OptWeights, ConfigShapeMismatchNamesTensorAndBothShapes) {
  const std::string dir = copy_fixture("pre_ln");
  models::OptConfig c = models::load_opt_config(dir);
  c.ffn_dim = 48;
  models::save_opt_config(c, dir + "/config.json");
  const std::string msg = error_of([&] { OptModel::load(dir); });
  expect_contains(msg, "model.decoder.layers.0.fc1.weight");
  expect_contains(msg, "[32, 16]");
  expect_contains(msg, "[48, 16]");
  expect_contains(msg, "model.safetensors");
}

TEST(OptWeights, WeightShapeMismatchNamesTensorAndBothShapes) {
  const std::string dir = copy_fixture("pre_ln");
  std::vector<float> wrong(3 * 16, 0.5f);
  rewrite_weights(dir, [&](std::vector<io::TensorToWrite>& ts) {
    for (auto& t : ts)
      if (t.name == "model.decoder.layers.1.self_attn.v_proj.weight") {
        t.shape = {3, 16};
        t.dtype = DType::f32;
        t.data = wrong.data();
      }
  });
  const std::string msg = error_of([&] { OptModel::load(dir); });
  expect_contains(msg, "model.decoder.layers.1.self_attn.v_proj.weight");
  expect_contains(msg, "[3, 16]");
  expect_contains(msg, "[16, 16]");
}

TEST(OptWeights, MissingTensorIsNamed) {
  const std::string dir = copy_fixture("pre_ln");
  rewrite_weights(dir, [](std::vector<io::TensorToWrite>& ts) {
    std::erase_if(ts, [](const auto& t) { return t.name == "model.decoder.layers.1.fc2.bias"; });
  });
  const std::string msg = error_of([&] { OptModel::load(dir); });
  expect_contains(msg, "layers.1.fc2.bias");
  expect_contains(msg, "missing");
}

TEST(OptWeights, MissingEmbeddingWithoutAliasIsNamed) {
  const std::string dir = copy_fixture("pre_ln");
  rewrite_weights(dir, [](std::vector<io::TensorToWrite>& ts) {
    std::erase_if(ts, [](const auto& t) { return t.name == "model.decoder.embed_tokens.weight"; });
  });
  expect_contains(error_of([&] { OptModel::load(dir); }), "embed_tokens.weight");
}

TEST(OptWeights, NonFloatTensorIsRejected) {
  const std::string dir = copy_fixture("pre_ln");
  std::vector<int32_t> ints(16, 1);
  rewrite_weights(dir, [&](std::vector<io::TensorToWrite>& ts) {
    for (auto& t : ts)
      if (t.name == "model.decoder.final_layer_norm.bias") {
        t.dtype = DType::i32;
        t.data = ints.data();
      }
  });
  const std::string msg = error_of([&] { OptModel::load(dir); });
  expect_contains(msg, "model.decoder.final_layer_norm.bias");
  expect_contains(msg, "dtype");
}

TEST(OptWeights, MissingConfigAndMissingWeights) {
  const std::string dir = copy_fixture("pre_ln");
  fs::remove(dir + "/config.json");
  expect_contains(error_of([&] { OptModel::load(dir); }), "config.json");
  const std::string dir2 = copy_fixture("pre_ln");
  fs::remove(dir2 + "/model.safetensors");
  const std::string msg = error_of([&] { OptModel::load(dir2); });
  EXPECT_NE(msg, "(no error)");
  expect_contains(msg, dir2);
  expect_contains(error_of([&] { OptModel::load(dir + "/nonexistent"); }), "nonexistent");
}

TEST(OptModelInput, IdsOutOfVocabAndBadShapes) {
  OptModel model = OptModel::load(fixture_dir("pre_ln"));
  NoGradGuard ng;
  Tensor mask = Tensor::from_vector(std::vector<int64_t>{1, 1, 1}, {1, 3}, DType::i64);
  auto ids = [](std::vector<int64_t> v) {
    const int64_t n = static_cast<int64_t>(v.size());
    return Tensor::from_vector(v, {1, n}, DType::i64);
  };
  std::string msg = error_of([&] { model.forward(ids({2, 64, 5}), mask); });
  expect_contains(msg, "64");
  expect_contains(msg, "vocabulary");
  expect_contains(error_of([&] { model.forward(ids({2, -1, 5}), mask); }), "vocabulary");
  expect_contains(error_of([&] { model.forward(ids({2, 3}), mask); }), "attention_mask");
  expect_contains(error_of([&] { model.forward(ids({2, 3, 4}).to(DType::f32), mask); }), "i64");
  Tensor bad_mask = Tensor::from_vector(std::vector<int64_t>{1, 2, 1}, {1, 3}, DType::i64);
  expect_contains(error_of([&] { model.forward(ids({2, 3, 4}), bad_mask); }), "0 or 1");
  // 65 tokens > max_position_embeddings (64).
  std::vector<int64_t> long_ids(65, 5);
  Tensor long_mask = Tensor::ones({1, 65}, DType::i64);
  expect_contains(error_of([&] { model.forward(ids(long_ids), long_mask); }),
                  "max_position_embeddings");
  EXPECT_THROW(model.loss(ids({2, 64}), Tensor::ones({1, 2}, DType::i64)), Error);
}

}  // namespace
}  // namespace lethe::models::test
