// What a careless or hostile user can put where lethe expects its files: non-regular files (FIFO,
// directory, symlink loop, device), oversized or deeply nested JSON, configs whose sizes overflow
// or that the checkpoint does not back, and weights holding NaN. Each must end in a lethe::Error
// naming the path (and field or tensor) — never a hang, a crash or an allocation sized by the
// config. Every test arms an alarm, so a hang fails the test instead of stalling ctest.
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <limits>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "engine/io/file_util.h"
#include "engine/io/json.h"
#include "engine/io/safetensors.h"
#include "models/opt/opt_config.h"
#include "models/opt/opt_model.h"
#include "models/tokenizer/tokenizer.h"
#include "tests/common/paths.h"
#include "tests/opt/opt_test_util.h"

namespace lethe::models::test {
namespace {

namespace fs = std::filesystem;

// Fails (kills) the test process if a step blocks for more than 20 s.
class NoHang : public ::testing::Test {
 protected:
  void SetUp() override { ::alarm(20); }
  void TearDown() override { ::alarm(0); }
};

void expect_has(const std::string& msg, std::initializer_list<std::string> parts) {
  for (const auto& p : parts)
    EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
}

std::string copy_dir(const std::string& from, const std::string& tag) {
  const std::string dir = lethe::testing::scratch_dir("harden", tag);
  for (const auto& e : fs::directory_iterator(from))
    fs::copy_file(e.path(), fs::path(dir) / e.path().filename());
  return dir;
}

// Replaces dir/name with a FIFO, a directory, a symlink loop or a character device (a symlink to
// /dev/null) and returns what each should be called in the error.
enum class Odd { fifo, directory, loop, device };
std::string make_odd(const std::string& dir, const std::string& name, Odd kind) {
  const fs::path p = fs::path(dir) / name;
  fs::remove_all(p);
  switch (kind) {
    case Odd::fifo: EXPECT_EQ(::mkfifo(p.c_str(), 0600), 0); return "FIFO";
    case Odd::directory: fs::create_directory(p); return "directory";
    case Odd::loop:
      fs::create_symlink(p.filename().string() + ".b", p);
      fs::create_symlink(p.filename(), p.string() + ".b");
      return "symbolic links";
    case Odd::device: fs::create_symlink("/dev/null", p); return "character device";
  }
  return "";
}

using OddFiles = NoHang;

TEST_F(OddFiles, InPlaceOfConfigJson) {
  for (Odd kind : {Odd::fifo, Odd::directory, Odd::loop, Odd::device}) {
    const std::string dir = copy_dir(fixture_dir("pre_ln"), "config");
    const std::string want = make_odd(dir, "config.json", kind);
    expect_has(error_of([&] { OptModel::load(dir); }), {dir + "/config.json", want});
  }
}

TEST_F(OddFiles, InPlaceOfModelSafetensors) {
  for (Odd kind : {Odd::fifo, Odd::directory, Odd::loop, Odd::device}) {
    const std::string dir = copy_dir(fixture_dir("pre_ln"), "weights");
    const std::string want = make_odd(dir, "model.safetensors", kind);
    const std::string msg = error_of([&] { OptModel::load(dir); });
    expect_has(msg, {dir + "/model.safetensors", want});
    EXPECT_EQ(msg.find("no model.safetensors"), std::string::npos) << msg;
  }
}

TEST_F(OddFiles, InPlaceOfTokenizerFiles) {
  const std::string bpe = lethe::testing::source_dir() + "/tests/tokenizer/fixtures/bpe";
  for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {
    for (Odd kind : {Odd::fifo, Odd::directory, Odd::device}) {
      const std::string dir = copy_dir(bpe, "tok");
      const std::string want = make_odd(dir, name, kind);
      expect_has(error_of([&] { tokenizer::load_tokenizer(dir); }),
                 {std::string(dir) + "/" + name, want});
    }
  }
  // vocab.json + merges.txt (no tokenizer.json)
  for (const char* name : {"vocab.json", "merges.txt"}) {
    const std::string dir = copy_dir(bpe, "vm");
    fs::remove(fs::path(dir) / "tokenizer.json");
    ASSERT_TRUE(fs::exists(fs::path(dir) / "vocab.json"));
    const std::string want = make_odd(dir, name, Odd::fifo);
    expect_has(error_of([&] { tokenizer::load_tokenizer(dir); }), {dir + "/" + name, want});
  }
  // a tokenizer "directory" that is a file
  expect_has(error_of([&] { tokenizer::load_tokenizer(bpe + "/tokenizer.json"); }),
             {"tokenizer.json", "not a directory"});
}

TEST_F(OddFiles, ReadTextFileRefusesOversizedFiles) {
  const std::string dir = lethe::testing::scratch_dir("harden", "big");
  const std::string path = dir + "/big.json";
  std::ofstream(path) << std::string(4096, ' ') << "{}";
  expect_has(error_of([&] { io::read_text_file(path, 1024); }), {path, "4098 bytes", "1024"});
  EXPECT_EQ(io::read_text_file(path, 1 << 20).size(), 4098u);
}

// ---- JSON

using DeepJson = NoHang;

TEST_F(DeepJson, TokenizerJsonNestedTooDeepIsAnError) {
  const std::string bpe = lethe::testing::source_dir() + "/tests/tokenizer/fixtures/bpe";
  const std::string dir = copy_dir(bpe, "deep");
  // 200,000 levels: enough to overflow the stack of a recursive parser or destructor.
  std::ofstream(dir + "/tokenizer.json") << std::string(200000, '[') << std::string(200000, ']');
  expect_has(error_of([&] { tokenizer::load_tokenizer(dir); }),
             {dir + "/tokenizer.json", "nested deeper than"});
  std::string objects;
  for (int i = 0; i < 100000; ++i) objects += "{\"a\":";
  objects += "1" + std::string(100000, '}');
  std::ofstream(dir + "/tokenizer.json") << objects;
  expect_has(error_of([&] { tokenizer::load_tokenizer(dir); }), {"nested deeper than"});
}

TEST_F(DeepJson, ParseJsonRefusesTextOverTheSizeLimit) {
  const std::string big(io::kMaxJsonBytes + 1, ' ');
  expect_has(error_of([&] { io::parse_json(big, "big.json"); }), {"big.json", "more than"});
}

// ---- config sizes

using ConfigSizes = NoHang;

std::string with_config(const std::string& tag, const nlohmann::json& patch) {
  const std::string dir = copy_dir(fixture_dir("pre_ln"), tag);
  nlohmann::json j = io::read_json_file(dir + "/config.json");
  j.merge_patch(patch);
  std::ofstream(dir + "/config.json") << j.dump();
  return dir;
}

TEST_F(ConfigSizes, HugeSizesAreRefusedByNameBeforeAnyAllocation) {
  const int64_t big = int64_t{1} << 40;
  for (const char* key : {"hidden_size", "ffn_dim", "vocab_size", "word_embed_proj_dim",
                          "max_position_embeddings", "num_hidden_layers"}) {
    SCOPED_TRACE(key);
    const std::string dir = with_config(key, {{key, big}});
    expect_has(error_of([&] { OptModel::load(dir); }), {"config.json", key, "larger than"});
  }
  // INT64_MAX, and a value past int64 (read as a float by JSON: not an integer field).
  for (const nlohmann::json& v :
       {nlohmann::json(std::numeric_limits<int64_t>::max()), nlohmann::json::parse("1e30")}) {
    const std::string dir = with_config("max", {{"hidden_size", v}});
    expect_has(error_of([&] { OptModel::load(dir); }), {"config.json", "hidden_size"});
  }
}

TEST_F(ConfigSizes, ParameterCountIsBoundedWithoutOverflow) {
  models::OptConfig c;                        // opt-125m
  EXPECT_EQ(c.parameter_count(), 125239296);  // OPT.md / transformers
  models::OptConfig c350 =
      models::load_opt_config(lethe::testing::source_dir() + "/tests/io/fixtures/config_350m.json");
  EXPECT_EQ(c350.parameter_count(), 331196416);
  // Every size at its own limit: each is allowed alone, together they are ~1e18 parameters.
  models::OptConfig huge;
  huge.vocab_size = models::OptConfig::kMaxVocabSize;
  huge.hidden_size = huge.word_embed_proj_dim = huge.ffn_dim = models::OptConfig::kMaxWidth;
  huge.num_hidden_layers = models::OptConfig::kMaxLayers;
  huge.num_attention_heads = 16;
  EXPECT_GT(huge.parameter_count(), models::OptConfig::kMaxParameters);
  expect_has(error_of([&] { huge.validate("c.json"); }), {"c.json", "parameters", "more than"});
}

TEST_F(ConfigSizes, SizesTheCheckpointDoesNotBackFailOnShapesNotOnMemory) {
  // Within the limits, but ~4 billion parameters: refused by the tensor comparison, before a
  // single parameter is allocated (this would take 16 GB).
  const std::string dir = with_config("layers", {{"num_hidden_layers", 4000}, {"ffn_dim", 100000}});
  expect_has(error_of([&] { OptModel::load(dir); }), {"model.safetensors", "fc1.weight", "shape"});
  const std::string dir2 = with_config("layers2", {{"num_hidden_layers", 4000}});
  expect_has(error_of([&] { OptModel::load(dir2); }), {"layers.2.", "missing"});
}

// ---- weights

using BadWeights = NoHang;

TEST_F(BadWeights, NanOrInfInAWeightIsAnErrorNamingTheTensor) {
  for (float bad :
       {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    const std::string dir = copy_dir(fixture_dir("pre_ln"), "nan");
    io::SafetensorsFile f = io::SafetensorsFile::open(dir + "/model.safetensors");
    std::vector<std::vector<char>> copies;
    std::vector<io::TensorToWrite> ts;
    for (const auto& t : f.tensors()) {
      copies.emplace_back(static_cast<const char*>(t.data),
                          static_cast<const char*>(t.data) + t.nbytes());
      if (t.name == "model.decoder.layers.1.fc2.weight")
        std::memcpy(copies.back().data() + 4 * 7, &bad, 4);
      ts.push_back({t.name, t.dtype, t.shape, copies.back().data()});
    }
    io::write_safetensors(dir + "/model.safetensors", ts);
    expect_has(error_of([&] { OptModel::load(dir); }),
               {"model.safetensors", "layers.1.fc2.weight", std::isnan(bad) ? "NaN" : "+Inf",
                "element 7"});
  }
}

}  // namespace
}  // namespace lethe::models::test
