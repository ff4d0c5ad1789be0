// Sharded checkpoints (model.safetensors.index.json) and open_checkpoint's choice of files. The
// 2-shard fixture was saved by transformers' save_pretrained; expected sums come from torch.
#include <cmath>
#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "engine/io/safetensors.h"
#include "models/opt/opt_config.h"
#include "tests/io/test_util.h"

namespace lethe::io {
namespace {

using test::expect_error;
using test::fixture;
namespace fs = std::filesystem;

nlohmann::json expected() {
  std::ifstream in(fixture("sharded_expected.json"));
  return nlohmann::json::parse(in);
}

void check_checkpoint(const SafetensorsIndex& idx, const nlohmann::json& e) {
  ASSERT_EQ(e["tensors"].size(), 36u)
      << "sharded_expected.json (tools/fixtures/make_io_fixtures.py)";
  ASSERT_EQ(idx.names().size(), e["tensors"].size());
  for (const auto& et : e["tensors"]) {
    const std::string name = et["name"];
    SCOPED_TRACE(name);
    const TensorInfo& t = idx.at(name);
    EXPECT_EQ(t.dtype, DType::f32);
    EXPECT_EQ(t.shape, et["shape"].get<std::vector<int64_t>>());
    double sum = 0, abs_sum = 0;
    for (int64_t i = 0; i < t.numel(); ++i) {
      float v;
      std::memcpy(&v, static_cast<const char*>(t.data) + 4 * i, 4);
      sum += v;
      abs_sum += std::fabs(v);
      if (i < static_cast<int64_t>(et["first"].size())) {
        EXPECT_EQ(v, et["first"][i].get<double>());
      }
    }
    EXPECT_NEAR(sum, et["sum"].get<double>(), 1e-9 * (1 + abs_sum));
    EXPECT_NEAR(abs_sum, et["abs_sum"].get<double>(), 1e-9 * (1 + abs_sum));
  }
}

TEST(Sharded, ReadsTwoShardIndexFromTransformers) {
  auto e = expected();
  SafetensorsIndex idx = SafetensorsIndex::open(fixture("sharded/model.safetensors.index.json"));
  EXPECT_EQ(idx.shards().size(), 2u);
  EXPECT_EQ(idx.total_size(), e["total_size"].get<uint64_t>());
  check_checkpoint(idx, e);
  for (const auto& et : e["tensors"]) {
    const std::string shard = idx.shard_of(et["name"]).path();
    EXPECT_EQ(fs::path(shard).filename().string(), et["shard"].get<std::string>());
  }
  EXPECT_EQ(idx.metadata().at("format"), "pt");
  EXPECT_EQ(idx.find("model.decoder.nope"), nullptr);
  expect_error([&] { idx.at("model.decoder.nope"); },
               {"model.safetensors.index.json", "'model.decoder.nope'"});
  expect_error([&] { idx.shard_of("x"); }, {"'x'"});
}

TEST(Sharded, OpenCheckpointPicksIndexOrSingleFile) {
  auto e = expected();
  SafetensorsIndex a = open_checkpoint(fixture("sharded"));
  EXPECT_EQ(a.shards().size(), 2u);
  check_checkpoint(a, e);

  // A directory with model.safetensors is read as one file (preferred over an index).
  const std::string dir = test::temp_dir("single");
  std::vector<TensorToWrite> out;
  for (const auto& name : a.names()) {
    const TensorInfo& t = a.at(name);
    out.push_back({name, t.dtype, t.shape, t.data});
  }
  write_safetensors(dir + "/model.safetensors", out);
  models::save_opt_config(models::load_opt_config(fixture("sharded")), dir + "/config.json");
  // With LETHE_TEST_KEEP=DIR, a copy for the manual cross-check that transformers loads it:
  //   python tools/fixtures/make_io_fixtures.py --verify-checkpoint DIR/lethe_checkpoint
  lethe::testing::keep_copy(dir, "lethe_checkpoint");
  fs::copy_file(fixture("sharded/model.safetensors.index.json"),
                dir + "/model.safetensors.index.json");
  SafetensorsIndex b = open_checkpoint(dir);
  EXPECT_EQ(b.shards().size(), 1u);
  check_checkpoint(b, e);
  EXPECT_EQ(open_checkpoint(dir + "/model.safetensors").shards().size(), 1u);
  EXPECT_EQ(open_checkpoint(fixture("sharded/model.safetensors.index.json")).shards().size(), 2u);
}

TEST(Sharded, EmptyOrBinOnlyDirectory) {
  const std::string dir = test::temp_dir("nockpt");
  expect_error([&] { open_checkpoint(dir); },
               {dir, "no model.safetensors or model.safetensors.index.json"});
  test::write_bytes(dir + "/pytorch_model.bin", "PK");
  expect_error([&] { open_checkpoint(dir); }, {"convert_bin_to_safetensors.py"});
  expect_error([&] { open_checkpoint(dir + "/missing"); }, {dir + "/missing", "no such file"});
}

// Copies the fixture shards into a temp dir and writes `index` next to them.
std::string index_dir_with(const nlohmann::json& index) {
  const std::string dir = test::temp_dir("idx");
  for (const char* f : {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"})
    fs::copy_file(fixture(std::string("sharded/") + f), dir + "/" + f);
  test::write_bytes(dir + "/model.safetensors.index.json", index.dump());
  return dir + "/model.safetensors.index.json";
}

nlohmann::json fixture_index() {
  std::ifstream in(fixture("sharded/model.safetensors.index.json"));
  return nlohmann::json::parse(in);
}

TEST(Sharded, MissingShardFile) {
  auto j = fixture_index();
  j["weight_map"]["model.decoder.final_layer_norm.bias"] = "model-00003-of-00003.safetensors";
  const std::string path = index_dir_with(j);
  expect_error([&] { SafetensorsIndex::open(path); },
               {path, "shard 'model-00003-of-00003.safetensors'",
                "'model.decoder.final_layer_norm.bias'", "not found"});
}

TEST(Sharded, NameMissingFromItsShard) {
  auto j = fixture_index();
  j["weight_map"]["lm_head.weight"] = "model-00002-of-00002.safetensors";
  const std::string path = index_dir_with(j);
  expect_error(
      [&] { SafetensorsIndex::open(path); },
      {path, "tensor 'lm_head.weight'", "model-00002-of-00002.safetensors", "has no such tensor"});
  // A tensor mapped to the wrong (existing) shard is caught the same way.
  auto k = fixture_index();
  k["weight_map"]["model.decoder.embed_tokens.weight"] = "model-00002-of-00002.safetensors";
  const std::string path2 = index_dir_with(k);
  expect_error([&] { SafetensorsIndex::open(path2); }, {"'model.decoder.embed_tokens.weight'"});
}

TEST(Sharded, MalformedIndex) {
  auto bad = [](const nlohmann::json& j, std::initializer_list<std::string> parts) {
    const std::string path = index_dir_with(j);
    expect_error([&] { SafetensorsIndex::open(path); }, parts);
  };
  bad(nlohmann::json::array(), {"not a JSON object"});
  bad({{"metadata", {}}}, {"no 'weight_map'"});
  bad({{"weight_map", {"a", "b"}}}, {"'weight_map' is not an object"});
  bad({{"weight_map", {{"a", 3}}}}, {"tensor 'a'", "not a file name"});
  bad({{"weight_map", {{"a", "../model-00001-of-00002.safetensors"}}}}, {"'a'", "relative path"});
  bad({{"weight_map", {{"a", "/etc/passwd"}}}}, {"relative path"});
  bad({{"metadata", {{"total_size", "big"}}}, {"weight_map", nlohmann::json::object()}},
      {"total_size"});
  const std::string dir = test::temp_dir("dupidx");
  test::write_bytes(dir + "/i.json", R"({"weight_map": {"a": "x", "a": "y"}})");
  expect_error([&] { SafetensorsIndex::open(dir + "/i.json"); }, {"duplicate key 'a'"});
  test::write_bytes(dir + "/j.json", R"({"weight_map": {"a": )");
  expect_error([&] { SafetensorsIndex::open(dir + "/j.json"); }, {dir + "/j.json", "invalid JSON"});
}

}  // namespace
}  // namespace lethe::io
