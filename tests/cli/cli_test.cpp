// Runs the built `lethe` binary as a user would and checks exit codes, stderr messages and the
// JSON Lines on stdout; expected ids/tensors come from the HF-generated fixtures, not from lethe.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/common/compare.h"
#include "tests/common/paths.h"

namespace lethe::testing {
const std::string& cli_binary();  // generated: tests/cli/CMakeLists.txt
}  // namespace lethe::testing

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Result {
  int status = -1;
  std::string out, err;
};

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'')
      q.append("'\\''");
    else
      q.push_back(c);
  }
  q.push_back('\'');
  return q;
}

fs::path temp_path(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("lethe_cli_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir / name;
}

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Runs `lethe <args>` through the shell; stdout captured by popen, stderr through a temp file.
// `env` (e.g. "CUDA_VISIBLE_DEVICES=") is put before the command.
Result run(const std::vector<std::string>& args, const std::string& env = "") {
  static int counter = 0;
  fs::path err_file = temp_path("stderr_" + std::to_string(counter++));
  std::string cmd = env.empty() ? "" : env + " ";
  cmd += quote(lethe::testing::cli_binary());
  for (const std::string& a : args) {
    cmd += ' ';
    cmd += quote(a);
  }
  cmd += " 2>";
  cmd += quote(err_file.string());
  Result r;
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) r.out.append(buf, n);
  int st = pclose(pipe);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.err = read_file(err_file);
  return r;
}

std::vector<json> json_lines(const std::string& out) {
  std::vector<json> lines;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    json j = json::parse(line, nullptr, false);
    EXPECT_TRUE(j.is_object()) << "not a JSON object line: " << line;
    lines.push_back(j);
  }
  return lines;
}

std::vector<json> read_jsonl(const std::string& path) {
  std::ifstream f(path);
  EXPECT_TRUE(f.is_open()) << path;
  std::vector<json> rows;
  std::string line;
  while (std::getline(f, line))
    if (!line.empty()) rows.push_back(json::parse(line));
  return rows;
}

// A failed run: the given status, nothing on stdout, exactly one "lethe: error: " line that
// contains `needle`.
void expect_error(const Result& r, int status, const std::string& needle) {
  EXPECT_EQ(r.status, status) << r.err;
  EXPECT_EQ(r.out, "");
  ASSERT_EQ(r.err.rfind("lethe: error: ", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << "'" << needle << "' not in: " << r.err;
}

// Removes this process's temp directory after the last test.
class TempDirCleanup : public ::testing::Environment {
 public:
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(fs::temp_directory_path() / ("lethe_cli_test_" + std::to_string(::getpid())),
                   ec);
  }
};
const auto* const kCleanup = ::testing::AddGlobalTestEnvironment(new TempDirCleanup);

const std::string kBpe = "tests/tokenizer/fixtures/bpe";
const std::string kSpm = "tests/tokenizer/fixtures/spm";
const std::string kLlamaFixtures = "tests/llama/fixtures/";
const std::string kSharded = "tests/io/fixtures/sharded";

// ---- top level -----------------------------------------------------------------------------

TEST(Cli, Version) {
  Result r = run({"--version"});
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out, std::string("lethe ") + LETHE_EXPECTED_VERSION + "\n");
}

TEST(Cli, HelpListsEverySubcommand) {
  Result r = run({"--help"});
  EXPECT_EQ(r.status, 0);
  for (const char* sub : {"demo", "bench", "tokenize", "inspect", "score", "generate", "unlearn",
                          "finetune", "eval", "merge"})
    EXPECT_NE(r.out.find(sub), std::string::npos) << sub;
}

TEST(Cli, UnknownSubcommand) {
  expect_error(run({"frobnicate"}), 2, "unknown command 'frobnicate'");
}

TEST(Cli, MissingSubcommand) {
  expect_error(run({}), 2, "subcommand");
}

TEST(Cli, UnknownFlag) {
  expect_error(run({"tokenize", "--model", kBpe, "--bogus-flag", "x"}), 2, "--bogus-flag");
  expect_error(run({"--bogus-flag"}), 2, "--bogus-flag");
}

TEST(Cli, MissingRequiredFlag) {
  expect_error(run({"inspect"}), 2, "--model");
}

// ---- bench ops -----------------------------------------------------------------------------

void check_bench_lines(const Result& r, const std::string& dtype) {
  ASSERT_EQ(r.status, 0) << r.err;
  std::vector<json> lines = json_lines(r.out);
  std::set<std::string> ops;
  for (const json& l : lines) {
    ops.insert(l.at("op").get<std::string>());
    EXPECT_EQ(l.at("bench"), "ops");
    EXPECT_EQ(l.at("impl"), "lethe");
    EXPECT_EQ(l.at("dtype"), dtype);
    EXPECT_EQ(l.at("device"), "cpu");
    EXPECT_EQ(l.at("threads"), 1);
    EXPECT_EQ(l.at("status"), "ok") << l.dump();
    if (l.at("status") != "ok") continue;
    double ms = l.at("ms"), flops = l.at("flops"), gflops = l.at("gflops");
    EXPECT_GT(ms, 0);
    EXPECT_NEAR(gflops, flops / (ms * 1e6), 1e-9 * gflops + 1e-12);
    EXPECT_LE(l.at("ms_min").get<double>(), ms);
  }
  // FLOP formulas of docs/perf.md at the small sizes (matmul 64x32 @ 32x48; attention 1x2x16x8).
  EXPECT_EQ(lines.at(0).at("op"), "matmul");
  EXPECT_EQ(lines.at(0).at("shape"), "64x32 @ 32x48");
  EXPECT_DOUBLE_EQ(lines.at(0).at("flops").get<double>(), 2.0 * 64 * 32 * 48);
  EXPECT_EQ(ops, (std::set<std::string>{"matmul", "linear", "attention", "attention_masked",
                                        "layer_norm", "cross_entropy"}));
  EXPECT_EQ(lines.size(), 7u);
}

TEST(CliBench, OpsSmallF32) {
  Result r =
      run({"bench", "ops", "--sizes", "small", "--repeat", "1", "--warmup", "0", "--threads", "1"});
  check_bench_lines(r, "f32");
  EXPECT_NE(r.err.find("GFLOP/s"), std::string::npos) << "table missing on stderr";
}

TEST(CliBench, OpsSmallBf16JsonOnly) {
  Result r = run({"bench", "ops", "--sizes", "small", "--repeat", "2", "--dtype", "bf16",
                  "--threads", "1", "--json"});
  check_bench_lines(r, "bf16");
  EXPECT_EQ(r.err, "");
}

TEST(CliBench, OpFilter) {
  Result r =
      run({"bench", "ops", "--sizes", "small", "--repeat", "1", "--op", "layer_norm", "--json"});
  ASSERT_EQ(r.status, 0) << r.err;
  std::vector<json> lines = json_lines(r.out);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].at("op"), "layer_norm");
  EXPECT_DOUBLE_EQ(lines[0].at("gbps").get<double>(),
                   5.0 * 16 * 32 * 4 / (lines[0].at("ms").get<double>() * 1e6));
}

TEST(CliBench, HeadSmall) {
  Result r = run({"bench", "head", "--tokens", "40", "--vocab", "97", "--embed", "8", "--threads",
                  "1", "--json"});
  ASSERT_EQ(r.status, 0) << r.err;
  std::vector<json> lines = json_lines(r.out);
  ASSERT_EQ(lines.size(), 2u) << r.out;
  EXPECT_EQ(lines[0].at("impl"), "fused");
  EXPECT_EQ(lines[1].at("impl"), "unfused");
  for (const json& l : lines) {
    EXPECT_EQ(l.at("bench"), "head");
    EXPECT_EQ(l.at("tokens"), 40);
    EXPECT_GT(l.at("ms").get<double>(), 0.0);
    EXPECT_GT(l.at("peak_rss_mb").get<double>(), 0.0);
  }
  EXPECT_EQ(r.err, "");
}

// The Llama-shaped step (SmolLM-135M's widths), one layer and a few tokens: it runs and says so.
TEST(CliBench, StepOnTheLlamaShape) {
  Result r = run({"bench", "step", "--model", "smollm-135m", "--layers", "1", "--steps", "1",
                  "--batch", "1", "--seq", "8", "--threads", "1", "--json"});
  ASSERT_EQ(r.status, 0) << r.err;
  std::vector<json> lines = json_lines(r.out);
  ASSERT_EQ(lines.size(), 1u) << r.out;
  EXPECT_EQ(lines[0].at("model"), "smollm-135m");
  EXPECT_EQ(lines[0].at("tokens_per_step"), 16);
  EXPECT_GT(lines[0].at("step_ms_median").get<double>(), 0.0);
}

TEST(CliBench, BadFlags) {
  expect_error(run({"bench", "step", "--method", "dpo"}), 2, "--method");
  expect_error(run({"bench", "step", "--model", "7b"}), 2, "--model");
  expect_error(run({"bench", "step", "--seq", "1"}), 2, "--seq");
  expect_error(run({"bench", "step", "--batch", "0"}), 2, "--batch");
  expect_error(run({"bench", "step", "--device", "tpu"}), 2, "--device");
  expect_error(run({"bench", "head", "--tokens", "0"}), 2, "--tokens");
  expect_error(run({"bench", "head", "--vocab", "-3"}), 2, "--vocab");
  expect_error(run({"bench", "head", "--embed", "0"}), 2, "--embed");
  expect_error(run({"bench", "head", "--threads", "0"}), 2, "--threads");
  expect_error(run({"bench", "ops", "--dtype", "f16"}), 2, "--dtype");
  expect_error(run({"bench", "ops", "--repeat", "0"}), 2, "--repeat");
  expect_error(run({"bench", "ops", "--sizes", "huge"}), 2, "--sizes");
  expect_error(run({"bench", "ops", "--sizes", "small", "--op", "nosuchop"}), 1, "--op");
  expect_error(run({"bench", "ops", "--device", "tpu"}), 2, "--device");
  expect_error(run({"bench"}), 2, "subcommand");
}

// ---- tokenize ------------------------------------------------------------------------------

// Encodes every fixture text through --input and compares with the HF ids.
void check_encode_fixture(const std::string& model, const std::string& fixture,
                          const std::vector<std::string>& extra = {}) {
  std::vector<json> expected = read_jsonl(fixture);
  ASSERT_GT(expected.size(), 100u);
  fs::path input = temp_path("texts.jsonl");
  {
    std::ofstream f(input, std::ios::binary);
    for (const json& e : expected) f << e.at("text").dump() << "\n";
  }
  std::vector<std::string> args = {"tokenize", "--model", model, "--input", input.string()};
  args.insert(args.end(), extra.begin(), extra.end());
  Result r = run(args);
  ASSERT_EQ(r.status, 0) << r.err;
  std::vector<json> lines = json_lines(r.out);
  ASSERT_EQ(lines.size(), expected.size());
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(lines[i].at("text"), expected[i].at("text")) << i;
    EXPECT_EQ(lines[i].at("ids"), expected[i].at("ids")) << expected[i].at("text").dump();
  }
}

// Decodes every fixture row (a JSON array per --input line) and compares with the HF text.
void check_decode_fixture(const std::string& model, const std::string& fixture) {
  for (bool skip : {false, true}) {
    std::vector<json> expected;
    for (const json& e : read_jsonl(fixture))
      if (e.value("skip_special", false) == skip) expected.push_back(e);
    if (expected.empty()) continue;
    fs::path input = temp_path("ids.jsonl");
    {
      std::ofstream f(input, std::ios::binary);
      for (const json& e : expected) f << e.at("ids").dump() << "\n";
    }
    std::vector<std::string> args = {"tokenize", "--model", model,
                                     "--decode", "--input", input.string()};
    if (skip) args.push_back("--skip-special");
    Result r = run(args);
    ASSERT_EQ(r.status, 0) << r.err;
    std::vector<json> lines = json_lines(r.out);
    ASSERT_EQ(lines.size(), expected.size());
    for (size_t i = 0; i < lines.size(); ++i) {
      EXPECT_EQ(lines[i].at("ids"), expected[i].at("ids"));
      EXPECT_EQ(lines[i].at("text"), expected[i].at("text")) << expected[i].at("ids").dump();
    }
  }
}

TEST(CliTokenize, BpeMatchesHuggingFace) {
  check_encode_fixture(kBpe, "tests/tokenizer/fixtures/bpe_encode.jsonl");
  check_decode_fixture(kBpe, "tests/tokenizer/fixtures/bpe_decode.jsonl");
}

TEST(CliTokenize, SentencePieceMatchesReference) {
  // The sentencepiece package's encode adds no BOS.
  check_encode_fixture(kSpm, "tests/tokenizer/fixtures/spm_encode.jsonl", {"--no-bos"});
  check_decode_fixture(kSpm, "tests/tokenizer/fixtures/spm_decode.jsonl");
}

TEST(CliTokenize, TextArgumentsAndDecodeArguments) {
  // The first fixture rows with a non-empty text, passed as arguments.
  std::vector<json> expected = read_jsonl("tests/tokenizer/fixtures/bpe_encode.jsonl");
  std::vector<json> picked;
  for (const json& e : expected)
    if (picked.size() < 3 && e.at("text").get<std::string>().size() > 2 &&
        e.at("text").get<std::string>()[0] != '-')
      picked.push_back(e);
  ASSERT_EQ(picked.size(), 3u);
  std::vector<std::string> args = {"tokenize", "--model", kBpe};
  for (const json& e : picked) args.push_back(e.at("text"));
  Result r = run(args);
  ASSERT_EQ(r.status, 0) << r.err;
  std::vector<json> lines = json_lines(r.out);
  ASSERT_EQ(lines.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(lines[i].at("ids"), picked[i].at("ids"));

  // --no-bos drops the leading BOS (id 2 for this OPT-style tokenizer).
  Result nb = run({"tokenize", "--model", kBpe, "--no-bos", picked[0].at("text")});
  ASSERT_EQ(nb.status, 0) << nb.err;
  std::vector<int64_t> ids = picked[0].at("ids");
  ASSERT_EQ(ids.at(0), 2);
  ids.erase(ids.begin());
  EXPECT_EQ(json_lines(nb.out).at(0).at("ids"), json(ids));

  // --decode with ids as arguments: one object.
  std::vector<json> dec = read_jsonl("tests/tokenizer/fixtures/bpe_decode.jsonl");
  const json* row = nullptr;
  for (const json& e : dec)
    if (!e.value("skip_special", false) && e.at("ids").size() > 1) row = row ? row : &e;
  ASSERT_NE(row, nullptr);
  std::vector<std::string> dargs = {"tokenize", "--model", kBpe, "--decode"};
  for (const json& id : row->at("ids")) dargs.push_back(std::to_string(id.get<int64_t>()));
  Result d = run(dargs);
  ASSERT_EQ(d.status, 0) << d.err;
  std::vector<json> dl = json_lines(d.out);
  ASSERT_EQ(dl.size(), 1u);
  EXPECT_EQ(dl[0].at("text"), row->at("text"));
}

TEST(CliTokenize, Errors) {
  expect_error(run({"tokenize", "--model", "tests/cli/no_such_dir", "hello"}), 1, "no_such_dir");
  expect_error(run({"tokenize", "--model", kBpe}), 1, "no texts");
  expect_error(run({"tokenize", "--model", kBpe, "--input", "tests/cli/no_such_file.jsonl"}), 1,
               "no_such_file.jsonl");
  fs::path bad = temp_path("bad.jsonl");
  {
    std::ofstream f(bad);
    f << "\"fine\"\nnot json\n";
  }
  expect_error(run({"tokenize", "--model", kBpe, "--input", bad.string()}), 1, bad.string() + ":2");
  expect_error(run({"tokenize", "--model", kBpe, "--decode", "12", "x7"}), 1, "x7");
  expect_error(run({"tokenize", "--model", kBpe, "--input", bad.string(), "--decode"}), 1,
               bad.string() + ":1");
  // Invalid UTF-8 in a text is the tokenizer's error, reported on one line.
  fs::path latin1 = temp_path("latin1.jsonl");
  {
    std::ofstream f(latin1, std::ios::binary);
    f << "\"caf\xe9\"\n";
  }
  Result r = run({"tokenize", "--model", kBpe, "--input", latin1.string()});
  EXPECT_NE(r.status, 0);
  EXPECT_EQ(r.err.rfind("lethe: error: ", 0), 0u) << r.err;
}

// ---- inspect ------------------------------------------------------------------------------

TEST(CliInspect, ShardedCheckpoint) {
  json index = json::parse(read_file(kSharded + "/model.safetensors.index.json"));
  json config = json::parse(read_file(kSharded + "/config.json"));
  Result r = run({"inspect", "--model", kSharded});
  ASSERT_EQ(r.status, 0) << r.err;
  std::vector<json> lines = json_lines(r.out);
  const json& weight_map = index.at("weight_map");
  ASSERT_EQ(lines.size(), 1 + weight_map.size());
  const json& summary = lines[0];
  // total_parameters was written by transformers (tools/fixtures/make_io_fixtures.py).
  EXPECT_EQ(summary.at("parameters"), index.at("metadata").at("total_parameters"));
  EXPECT_EQ(summary.at("bytes"), index.at("metadata").at("total_size"));
  EXPECT_EQ(summary.at("tensors"), weight_map.size());
  EXPECT_EQ(summary.at("files").size(), 2u);
  for (const char* field : {"hidden_size", "num_hidden_layers", "vocab_size", "ffn_dim"})
    EXPECT_EQ(summary.at("config").at(field), config.at(field)) << field;
  std::set<std::string> seen;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::string name = lines[i].at("name");
    ASSERT_TRUE(weight_map.contains(name)) << name;
    EXPECT_EQ(lines[i].at("file"), weight_map.at(name));
    EXPECT_EQ(lines[i].at("dtype"), "F32");
    seen.insert(name);
  }
  EXPECT_EQ(seen.size(), weight_map.size());

  Result quiet = run({"inspect", "--model", kSharded, "--no-tensors"});
  ASSERT_EQ(quiet.status, 0);
  EXPECT_EQ(json_lines(quiet.out).size(), 1u);
}

// A sharded Qwen2 checkpoint: the family, its config with transformers' defaults, and a parameter
// count equal to the config's (the tied head stored once).
TEST(CliInspect, LlamaFamilyCheckpoint) {
  Result r = run({"inspect", "--model", kLlamaFixtures + "qwen2", "--no-tensors"});
  ASSERT_EQ(r.status, 0) << r.err;
  std::vector<json> lines = json_lines(r.out);
  ASSERT_EQ(lines.size(), 1u);
  const json& s = lines[0];
  EXPECT_EQ(s.at("family"), "llama");
  EXPECT_EQ(s.at("config").at("model_type"), "qwen2");
  EXPECT_EQ(s.at("files").size(), 2u);
  const json index = json::parse(read_file(kLlamaFixtures + "qwen2/model.safetensors.index.json"));
  EXPECT_EQ(s.at("parameters"), index.at("metadata").at("total_parameters"));
  // An unsupported setting is an error naming the field, never a silently different model.
  fs::path dir = temp_path("inspect_dynamic");
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(kLlamaFixtures + "qwen2"))
    fs::copy_file(e.path(), dir / e.path().filename(), fs::copy_options::overwrite_existing);
  json c = json::parse(read_file((dir / "config.json").string()));
  c["rope_parameters"] = {{"rope_type", "dynamic"}, {"factor", 2.0}, {"rope_theta", 10000.0}};
  std::ofstream(dir / "config.json") << c.dump();
  expect_error(run({"inspect", "--model", dir.string()}), 1, "rope");
}

TEST(CliInspect, SingleFileWithoutConfig) {
  json expected = json::parse(read_file("tests/io/fixtures/safetensors_expected.json"));
  const json* file = nullptr;
  for (const json& f : expected)
    if (f.at("file") == "dtypes.safetensors") file = &f;
  ASSERT_NE(file, nullptr);
  Result r = run({"inspect", "--model", "tests/io/fixtures/dtypes.safetensors"});
  ASSERT_EQ(r.status, 0) << r.err;
  std::vector<json> lines = json_lines(r.out);
  ASSERT_EQ(lines.size(), 1 + file->at("tensors").size());
  EXPECT_TRUE(lines[0].at("config").is_null());
  EXPECT_NE(r.err.find("no config.json"), std::string::npos);
  std::map<std::string, json> by_name;
  for (size_t i = 1; i < lines.size(); ++i) by_name[lines[i].at("name")] = lines[i];
  for (const json& t : file->at("tensors")) {
    ASSERT_TRUE(by_name.count(t.at("name"))) << t.at("name");
    const json& got = by_name[t.at("name")];
    EXPECT_EQ(got.at("dtype"), t.at("dtype"));
    EXPECT_EQ(got.at("shape"), t.at("shape"));
  }
}

TEST(CliInspect, Errors) {
  expect_error(run({"inspect", "--model", "tests/cli/no_such_model"}), 1, "no_such_model");
  fs::path junk = temp_path("junk.safetensors");
  {
    std::ofstream f(junk, std::ios::binary);
    f << "\x10\x00\x00\x00\x00\x00\x00\x00{not json}";
  }
  expect_error(run({"inspect", "--model", junk.string()}), 1, "junk.safetensors");
  fs::path truncated = temp_path("truncated.safetensors");
  {
    std::string bytes = read_file("tests/io/fixtures/dtypes.safetensors");
    std::ofstream f(truncated, std::ios::binary);
    f << bytes.substr(0, bytes.size() / 2);
  }
  expect_error(run({"inspect", "--model", truncated.string()}), 1, "truncated.safetensors");
}

// ---- score / generate ------------------------------------------------------------------------

const std::string kOptFixtures = "tests/opt/fixtures/";

// A fixture's folder: an OPT fixture's name, or "llama/<name>" for the Llama family's.
std::string fixture_dir(const std::string& name) {
  return name.rfind("llama/", 0) == 0 ? kLlamaFixtures + name.substr(6) : kOptFixtures + name;
}

json opt_reference(const std::string& name) {
  return json::parse(read_file(fixture_dir(name) + "/reference.json"));
}

// The rows of a [B, T] batch with their padding (mask 0) removed.
std::vector<std::vector<int64_t>> unpadded_rows(const json& ids, const json& mask,
                                                const json& shape) {
  int64_t B = shape[0], T = shape[1];
  std::vector<std::vector<int64_t>> rows(B);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      if (mask[b * T + t] == 1) rows[b].push_back(ids[b * T + t]);
  return rows;
}

fs::path write_id_lines(const std::vector<std::vector<int64_t>>& rows, const std::string& name) {
  fs::path p = temp_path(name);
  std::ofstream f(p);
  for (const auto& r : rows) f << json(r).dump() << "\n";
  return p;
}

// transformers' per-token logprobs (right-padded batch of the fixture) for each unpadded row.
// Each log-prob must be within atol + rtol·|reference|.
void check_score_fixture(const std::string& name, const std::string& dtype, double atol,
                         double rtol = 0, const std::string& device = "cpu") {
  json ref = opt_reference(name).at("right");
  auto rows = unpadded_rows(ref.at("ids"), ref.at("mask"), ref.at("shape"));
  int64_t T = ref.at("shape")[1];
  Result r = run({"score", "--model", fixture_dir(name), "--dtype", dtype, "--device", device,
                  "--input-ids", write_id_lines(rows, "score_ids.jsonl").string()});
  ASSERT_EQ(r.status, 0) << r.err;
  std::vector<json> lines = json_lines(r.out);
  ASSERT_EQ(lines.size(), rows.size());
  for (size_t b = 0; b < rows.size(); ++b) {
    EXPECT_EQ(lines[b].at("ids"), json(rows[b]));
    const json& got = lines[b].at("logprobs");
    ASSERT_EQ(got.size(), rows[b].size() - 1) << "row " << b;
    for (size_t t = 0; t < got.size(); ++t) {
      double want = ref.at("logprobs")[b * (T - 1) + t];
      EXPECT_NEAR(got[t].get<double>(), want, atol + rtol * std::abs(want))
          << name << " " << dtype << " row " << b << " t " << t;
    }
  }
}

TEST(CliScore, MatchesTransformers) {
  for (const char* name :
       {"pre_ln", "post_ln_proj", "f16", "sharded", "head_dim5", "llama/llama_gqa",
        "llama/llama3_bias_hd", "llama/qwen2", "llama/mistral"})
    check_score_fixture(name, "f32", 1e-4);
}

// bf16 mode rounds every GEMM operand to bf16 (unit roundoff u = 2^-9) and accumulates in f32.
// A log-prob is a difference of logits of about its own size, each the end of a short chain of
// such GEMMs, so its error is a small multiple of u·(1 + |log p|): measured 0.4–3.0 of that
// (median 0.7) over the 70 tokens of these five fixtures against transformers' f32 values.
// Allowed: 4·u·(1 + |log p|), about 0.008 for p near 1 and 0.09 for log p = -10.
TEST(CliScore, Bf16MatmulsStayWithinBf16Rounding) {
  const double u = 1.0 / 512;
  for (const char* name : {"pre_ln", "post_ln_proj", "f16", "sharded", "head_dim5"})
    check_score_fixture(name, "bf16", 4 * u, 4 * u);
}

void check_greedy_fixtures(const std::string& device) {
  for (const char* name :
       {"pre_ln", "post_ln_proj", "head_dim5", "llama/llama3_bias_hd", "llama/qwen2"}) {
    json g = opt_reference(name).at("greedy");
    auto prompts = unpadded_rows(g.at("prompt_ids"), g.at("prompt_mask"), g.at("prompt_shape"));
    // The config's EOS ids (Llama-3 style configs list several).
    const json eos_field =
        json::parse(read_file(fixture_dir(name) + "/config.json")).at("eos_token_id");
    const std::vector<int64_t> eos = eos_field.is_array() ? eos_field.get<std::vector<int64_t>>()
                                                          : std::vector<int64_t>{eos_field};
    Result r = run({"generate", "--model", fixture_dir(name), "--device", device,
                    "--max-new-tokens", std::to_string(g.at("max_new_tokens").get<int>()),
                    "--input-ids", write_id_lines(prompts, "prompts.jsonl").string()});
    ASSERT_EQ(r.status, 0) << r.err;
    std::vector<json> lines = json_lines(r.out);
    ASSERT_EQ(lines.size(), prompts.size());
    for (size_t b = 0; b < prompts.size(); ++b) {
      std::vector<int64_t> want;  // HF pads a row after EOS; lethe stops at EOS
      for (int64_t t : g.at("new_tokens")[b]) {
        want.push_back(t);
        if (std::find(eos.begin(), eos.end(), t) != eos.end()) break;
      }
      EXPECT_EQ(lines[b].at("prompt_ids"), json(prompts[b]));
      EXPECT_EQ(lines[b].at("ids"), json(want)) << name << " row " << b;
      EXPECT_TRUE(lines[b].at("text").is_null());  // no tokenizer in the fixture
    }
  }
}

TEST(CliGenerate, GreedyMatchesTransformers) {
  check_greedy_fixtures("cpu");
}

// A model directory with a tokenizer: the pre_ln fixture (vocab 64) plus the BPE fixture files.
fs::path model_with_tokenizer() {
  fs::path dir = temp_path("model_with_tokenizer");
  fs::create_directories(dir);
  for (const char* f : {"config.json", "model.safetensors"})
    fs::copy_file(kOptFixtures + "pre_ln/" + f, dir / f, fs::copy_options::overwrite_existing);
  for (const auto& entry : fs::directory_iterator(kBpe))
    fs::copy_file(entry.path(), dir / entry.path().filename(),
                  fs::copy_options::overwrite_existing);
  return dir;
}

TEST(CliScore, TextsGoThroughTheTokenizer) {
  fs::path dir = model_with_tokenizer();
  // Punctuation and digits have ids below the tiny model's vocabulary of 64.
  const std::vector<std::string> texts = {"!\"#$%&", "0123", "()*"};
  std::vector<std::string> args = {"tokenize", "--model", dir.string()};
  args.insert(args.end(), texts.begin(), texts.end());
  Result tok = run(args);
  ASSERT_EQ(tok.status, 0) << tok.err;
  std::vector<std::vector<int64_t>> ids;
  for (const json& l : json_lines(tok.out)) ids.push_back(l.at("ids"));

  args[0] = "score";
  Result by_text = run(args);
  ASSERT_EQ(by_text.status, 0) << by_text.err;
  Result by_ids = run(
      {"score", "--model", dir.string(), "--input-ids", write_id_lines(ids, "ids.jsonl").string()});
  ASSERT_EQ(by_ids.status, 0) << by_ids.err;
  std::vector<json> a = json_lines(by_text.out), b = json_lines(by_ids.out);
  ASSERT_EQ(a.size(), texts.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].at("ids"), json(ids[i]));
    EXPECT_EQ(a[i].at("logprobs").size(), ids[i].size() - 1);
    EXPECT_EQ(a[i], b[i]);
    for (const json& lp : a[i].at("logprobs")) EXPECT_LE(lp.get<double>(), 0.0);
  }

  // A text with tokens outside the model's vocabulary is a clear error.
  expect_error(run({"score", "--model", dir.string(), "hello world"}), 1, "vocab");
}

TEST(CliGenerate, TextPromptsSamplingIsSeeded) {
  fs::path dir = model_with_tokenizer();
  std::vector<std::string> args = {
      "generate", "--model",          dir.string(), "--prompt",      "0123", "--prompt",
      "!#",       "--max-new-tokens", "6",          "--temperature", "1.3",  "--top-p",
      "0.9",      "--top-k",          "20",         "--seed",        "7"};
  Result a = run(args), b = run(args);
  ASSERT_EQ(a.status, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  std::vector<json> lines = json_lines(a.out);
  ASSERT_EQ(lines.size(), 2u);
  for (const json& l : lines) {
    EXPECT_LE(l.at("ids").size(), 6u);
    EXPECT_TRUE(l.at("text").is_string());
  }
  EXPECT_EQ(lines[0].at("prompt_ids"), json({2, 19, 20, 21, 22}));  // as `tokenize` gives
}

TEST(CliModel, Errors) {
  expect_error(run({"score", "--model", "tests/cli/no_such_model", "hello"}), 1, "no_such_model");
  expect_error(run({"score", "--model", kOptFixtures + "pre_ln"}), 1, "no texts");
  // A model directory without tokenizer files cannot score texts.
  expect_error(run({"score", "--model", kOptFixtures + "pre_ln", "hello"}), 1, "tokenizer");
  expect_error(run({"generate", "--model", "tests/cli/no_such_model", "--prompt", "hi"}), 1,
               "no_such_model");
  expect_error(run({"generate", "--model", kBpe, "--prompt", "x", "--top-p", "1.5"}), 2, "--top-p");
  expect_error(run({"generate", "--model", kOptFixtures + "pre_ln"}), 1, "no prompt");
  // A tokenizer-only directory has no config.json / weights.
  expect_error(run({"generate", "--model", kBpe, "--prompt", "x"}), 1, "config.json");
  // No GPU is visible to this process on any machine (CUDA_VISIBLE_DEVICES empty), so asking for
  // one must fail with a message naming it, whether or not the machine has GPUs.
  const std::string ids = write_id_lines({{2, 5}}, "one.jsonl").string();
  expect_error(
      run({"score", "--model", kOptFixtures + "pre_ln", "--device", "cuda", "--input-ids", ids},
          "CUDA_VISIBLE_DEVICES="),
      1, "cuda");
  expect_error(
      run({"score", "--model", kOptFixtures + "pre_ln", "--device", "gpu0", "--input-ids", ids}), 2,
      "gpu0");
}

// Nonsense flag values are usage errors (exit 2) naming the flag and the allowed range in plain
// numbers — never accepted (NaN temperature decoding greedily, -1 wrapping to 2^64 - 1).
TEST(CliFlags, NonsenseValuesAreUsageErrorsNamingFlagAndRange) {
  const std::string ids = write_id_lines({{2, 5}}, "flags.jsonl").string();
  struct Bad {
    std::vector<std::string> args;
    std::string flag;
  };
  const std::vector<std::string> gen = {"generate", "--model", kOptFixtures + "pre_ln",
                                        "--input-ids", ids};
  std::vector<Bad> bad;
  for (const char* v : {"nan", "inf", "-1", "1e400", "abc", ""})
    bad.push_back({{"--temperature", v}, "--temperature"});
  for (const char* v : {"-1", "1.5", "abc", "18446744073709551616"})
    bad.push_back({{"--seed", v}, "--seed"});
  for (const char* v : {"0", "1.5", "nan", "-0.5"}) bad.push_back({{"--top-p", v}, "--top-p"});
  for (const char* v : {"-1", "2.5", "99999999999999999999"})
    bad.push_back({{"--top-k", v}, "--top-k"});
  for (const char* v : {"-1", "1e400", "nan"})
    bad.push_back({{"--max-new-tokens", v}, "--max-new-tokens"});
  for (const Bad& b : bad) {
    std::vector<std::string> args = gen;
    args.insert(args.end(), b.args.begin(), b.args.end());
    Result r = run(args);
    SCOPED_TRACE(b.args[0] + " '" + b.args[1] + "'");
    expect_error(r, 2, b.flag);
    EXPECT_NE(r.err.find("must be"), std::string::npos) << r.err;
    EXPECT_LT(r.err.size(), 200u) << "no 309-digit bounds: " << r.err;
  }
  for (const char* v : {"0", "1e400", "nan", "-3"})
    expect_error(run({"bench", "ops", "--sizes", "small", "--repeat", v}), 2, "--repeat");
  expect_error(run({"bench", "ops", "--threads", "0"}), 2, "--threads");
  // bench step refuses bad flags before it writes or loads anything.
  expect_error(run({"bench", "step", "--dtype", "f16"}), 2, "--dtype");
  expect_error(run({"bench", "step", "--steps", "0"}), 2, "--steps");
  expect_error(run({"bench", "step", "--threads", "0"}), 2, "--threads");
  expect_error(run({"bench", "step", "--layers", "200"}), 2, "--layers");
  expect_error(run({"bench", "step", "--lora", "-1"}), 2, "--lora");
  expect_error(run({"unlearn", "--stop-after", "0", "--set", "model.path=m"}), 2, "--stop-after");
  expect_error(run({"merge", "--model", "m", "--adapter", "a", "--output", "o", "--dtype", "f8"}),
               2, "--dtype");
  expect_error(run({"demo", "engine", "--lr", "nan"}), 2, "--lr");
  expect_error(run({"demo", "engine", "--seed", "-1"}), 2, "--seed");
  expect_error(run({"demo", "--seed", "-1"}), 2, "--seed");
  expect_error(run({"demo", "--threads", "-2"}), 2, "--threads");
  expect_error(run({"demo", "--seeds", "0"}), 2, "--seeds");
  expect_error(run({"demo", "--seeds", "101"}), 2, "--seeds");
  expect_error(run({"demo", "--epochs", "0"}), 2, "--epochs");
  expect_error(run({"demo", "--methods", "ga,dpo"}), 2, "--methods");
  {  // seeds that would wrap around: refused before anything is written
    const fs::path out = temp_path("demo_wrap");
    expect_error(
        run({"demo", "--seed", "18446744073709551615", "--seeds", "3", "--out", out.string()}), 2,
        "--seeds 3: the seeds would wrap around");
    EXPECT_FALSE(fs::exists(out));
  }
  // In range: accepted.
  Result ok = run({"generate", "--model", kOptFixtures + "pre_ln", "--input-ids", ids,
                   "--max-new-tokens", "2", "--temperature", "0.7", "--seed",
                   "18446744073709551615", "--top-p", "1", "--top-k", "3"});
  EXPECT_EQ(ok.status, 0) << ok.err;
}

TEST(CliTokenize, DecodingAnIdOutsideTheVocabularyIsAnError) {
  expect_error(run({"tokenize", "--model", kBpe, "--decode", "5", "1500"}), 1, "1500");
  expect_error(run({"tokenize", "--model", kBpe, "--decode", "-1"}), 1, "outside the vocabulary");
  const std::string rows = write_id_lines({{5, 6}, {7, 99999}}, "decode_rows.jsonl").string();
  expect_error(run({"tokenize", "--model", kBpe, "--decode", "--input", rows}), 1, "row 2");
}

// Work that cannot fit is refused before any is done: no prompt is generated when one of them
// would run past max_position_embeddings (64 for this fixture).
TEST(CliGenerate, PromptsThatCannotFitAreRefusedBeforeGenerating) {
  const std::string ids =
      write_id_lines({{2, 5, 6}, {2, 5, 6, 7, 8, 9, 10, 11, 12, 13}}, "fit.jsonl").string();
  Result r = run({"generate", "--model", kOptFixtures + "pre_ln", "--input-ids", ids,
                  "--max-new-tokens", "60"});
  // (stderr also carries the note that this directory has no tokenizer)
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_EQ(r.out, "") << "nothing may be generated when a prompt cannot fit";
  EXPECT_NE(r.err.find("lethe: error: generate: prompt 2 has 10 tokens"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("max_position_embeddings 64"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("at most 54"), std::string::npos) << r.err;
  Result fits = run({"generate", "--model", kOptFixtures + "pre_ln", "--input-ids", ids,
                     "--max-new-tokens", "54"});
  EXPECT_EQ(fits.status, 0) << fits.err;
  EXPECT_EQ(json_lines(fits.out).size(), 2u);
}

// A FIFO or a directory where a file is expected is an error, never a hang (timeout guards).
TEST(CliFiles, FifoOrDirectoryInsteadOfAFileIsAnError) {
  const fs::path fifo = temp_path("in.fifo");
  fs::remove(fifo);
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  expect_error(run({"score", "--model", kOptFixtures + "pre_ln", "--input-ids", fifo.string()},
                   "timeout 20"),
               1, "FIFO");
  expect_error(run({"tokenize", "--model", kBpe, "--input", fifo.string()}, "timeout 20"), 1,
               "FIFO");
  expect_error(run({"tokenize", "--model", kBpe, "--input", temp_path("").string()}), 1,
               "directory");
  expect_error(run({"inspect", "--model", "/dev/null"}, "timeout 20"), 1, "character device");
}

// score checks every row before scoring any: a bad row late in the file fails the run with
// nothing printed, instead of failing after the earlier rows.
TEST(CliScore, BadRowsAreRefusedBeforeAnyRowIsScored) {
  std::vector<int64_t> long_row(65, 5);  // pre_ln has max_position_embeddings 64
  struct Case {
    std::vector<std::vector<int64_t>> rows;
    std::string needle;
  };
  for (const Case& c : {Case{{{2, 5, 6}, {2, 64}}, "input 2: token id 64 is outside"},
                        Case{{{2, 5}, {2, -3}}, "token id -3"},
                        Case{{{2, 5}, long_row}, "input 2 has 65 tokens"}}) {
    Result r = run({"score", "--model", kOptFixtures + "pre_ln", "--input-ids",
                    write_id_lines(c.rows, "rows.jsonl").string()});
    expect_error(r, 1, c.needle);
  }
}

// ---- unlearn / finetune -----------------------------------------------------------------------

const std::string kMethods = "tests/trainers/fixtures/methods";

std::vector<std::string> train_args(const std::string& cmd, const std::string& out,
                                    const std::vector<std::string>& more) {
  std::vector<std::string> a = {cmd,
                                "--set",
                                "model.path=" + kMethods + "/model",
                                "--set",
                                "data.format=tokenized",
                                "--set",
                                "trainer.batch_size=2",
                                "--set",
                                "trainer.grad_accum=1",
                                "--set",
                                "trainer.max_steps=2",
                                "--set",
                                "trainer.lr=0.01",
                                "--set",
                                "output.dir=" + out};
  for (const std::string& m : more) {
    a.push_back("--set");
    a.push_back(m);
  }
  return a;
}

TEST(CliTrain, UnlearnWritesACheckpointRunJsonAndASummary) {
  const fs::path out = temp_path("unlearn_out");
  Result r = run(train_args("unlearn", out.string(),
                            {"method.name=npo", "data.forget=" + kMethods + "/forget.jsonl",
                             "data.retain=" + kMethods + "/retain.jsonl"}));
  ASSERT_EQ(r.status, 0) << r.err;
  std::vector<json> lines = json_lines(r.out);
  ASSERT_EQ(lines.size(), 1u) << r.out;
  EXPECT_EQ(lines[0].at("output"), out.string());
  EXPECT_EQ(lines[0].at("method"), "npo");
  EXPECT_EQ(lines[0].at("steps"), 2);
  EXPECT_TRUE(lines[0].at("final_loss").contains("forget_npo"));
  for (const char* f : {"config.json", "model.safetensors", "run.json"})
    EXPECT_TRUE(fs::exists(out / f)) << f;
  // Progress: plain lines on stderr when it is not a terminal.
  EXPECT_NE(r.err.find("step 1/2"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("step 2/2"), std::string::npos) << r.err;
  // What lethe wrote loads back (inspect reads the header).
  Result i = run({"inspect", "--model", out.string(), "--no-tensors"});
  EXPECT_EQ(i.status, 0) << i.err;
}

TEST(CliTrain, FinetuneFromARecipeFileWithOverrides) {
  const fs::path dir = temp_path("ft");
  fs::create_directories(dir);
  std::ofstream(dir / "r.yaml") << "model:\n  path: " << kMethods << "/model\n"
                                << "data:\n  format: tokenized\n  train: " << kMethods
                                << "/retain.jsonl\n"
                                << "trainer:\n  batch_size: 4\n  grad_accum: 1\n  epochs: 1\n"
                                << "output:\n  dir: " << (dir / "out").string() << "\n";
  Result r = run({"finetune", "--config", (dir / "r.yaml").string(), "--set", "trainer.lr=0.001"});
  ASSERT_EQ(r.status, 0) << r.err;
  const json run_json = json::parse(read_file(dir / "out" / "run.json"));
  EXPECT_EQ(run_json.at("command"), "finetune");
  EXPECT_EQ(run_json.at("config").at("trainer.lr"), "0.001");
  EXPECT_EQ(run_json.at("steps").size(), 2u);  // 8 samples, batch 4, one epoch
}

TEST(CliTrain, KeysListsTheSchema) {
  Result r = run({"unlearn", "--keys"});
  EXPECT_EQ(r.status, 0) << r.err;
  for (const char* k :
       {"model.path", "method.name", "method.epsilons", "data.pairing", "trainer.grad_accum",
        "trainer.max_grad_norm", "eval.every_steps", "output.keep"})
    EXPECT_NE(r.out.find(k), std::string::npos) << k;
}

// --print-config prints the resolved recipe (its defaults, its own keys, --set, schema defaults)
// as one JSON object — what run.json records under "config" — and runs nothing.
TEST(CliTrain, PrintConfigPrintsTheResolvedRecipeAndRunsNothing) {
  const fs::path out = temp_path("print_config_out");
  Result r = run({"unlearn", "--config", "recipes/tofu/forget10_npo.yaml", "--set",
                  "trainer.lr=2e-5", "--set", "output.dir=" + out.string(), "--print-config"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  const json c = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(c.is_object()) << r.out;
  EXPECT_EQ(c.at("method.name"), "npo");                      // the recipe's own
  EXPECT_EQ(c.at("data.forget"), "data/tofu/forget10.json");  // the recipe's own
  EXPECT_EQ(c.at("model.path"), "saves/finetune/tofu_full");  // recipes/base/tofu_unlearn.yaml
  EXPECT_EQ(c.at("trainer.weight_decay"), "0.01");            // recipes/base/open_unlearning.yaml
  EXPECT_EQ(c.at("trainer.lr"), "2e-5");                      // --set
  EXPECT_EQ(c.at("trainer.optimizer"), "adamw");              // schema default
  EXPECT_FALSE(c.contains("defaults"));
  EXPECT_FALSE(fs::exists(out));
  // Each key printed is a key `--keys` lists.
  const std::string keys = "\n" + run({"unlearn", "--keys"}).out;
  for (const auto& [k, v] : c.items())
    EXPECT_NE(keys.find("\n" + k + "  ("), std::string::npos) << k;
  // A recipe that does not check out is the same usage error as without the flag.
  expect_error(run({"finetune", "--config", "recipes/tofu/forget10_npo.yaml", "--print-config"}), 2,
               "data.train is required for lethe finetune");
}

TEST(CliTrain, RecipeMistakesAreUsageErrors) {
  const std::string out = temp_path("bad_out").string();
  expect_error(run(train_args("unlearn", out, {"method.name=ga", "trainer.lrr=1"})), 2,
               "did you mean 'trainer.lr'");
  expect_error(run(train_args("unlearn", out, {"method.name=ga", "trainer.lr=-1"})), 2,
               "trainer.lr");
  expect_error(run(train_args("unlearn", out, {"method.name=forget_everything"})), 2,
               "method.name");
  expect_error(run({"unlearn"}), 2, "--config");
  expect_error(run({"unlearn", "--config", "no/such/recipe.yaml"}), 2, "no/such/recipe.yaml");
  expect_error(run(train_args("finetune", out, {"method.name=ga"})), 2, "lethe finetune");
}

TEST(CliTrain, MissingDataIsARuntimeErrorBeforeAnyStep) {
  const std::string out = temp_path("missing_out").string();
  expect_error(run(train_args("unlearn", out,
                              {"method.name=graddiff", "data.forget=no/such/forget.jsonl",
                               "data.retain=" + kMethods + "/retain.jsonl"})),
               1, "no/such/forget.jsonl");
  EXPECT_FALSE(fs::exists(out + "/model.safetensors"));
}

// ---- demo ---------------------------------------------------------------------------------------

// The TOFU demo at its smallest: the whole pipeline (data, two models trained from scratch to the
// training criterion, six methods, TOFU evaluation, table, report with plots) in under a minute;
// the directions the README claims hold in its summary.json.
TEST(CliDemo, QuickRunPrintsTheTableAndWritesTheReport) {
  const fs::path out = temp_path("demo_quick");
  Result r = run({"demo", "--quick", "--out", out.string(), "--threads", "2"});
  ASSERT_EQ(r.status, 0) << r.err;
  for (const char* row : {"| target |", "| retain-only |", "| ga |", "| graddiff |", "| npo |",
                          "| simnpo |", "| mollm |", "| ngdiff |"})
    EXPECT_NE(r.out.find(row), std::string::npos) << row << " missing from:\n" << r.out;
  EXPECT_NE(r.out.find("forget quality"), std::string::npos);
  for (const char* f :
       {"report.md", "summary.json", "forget_quality_vs_utility.svg", "forget_loss.svg",
        "retain_loss.svg", "seed-0/target/model.safetensors", "seed-0/eval/target/eval.json",
        "seed-0/ngdiff/run.json", "seed-0/eval/ngdiff/eval.json"})
    EXPECT_TRUE(fs::exists(out / f)) << f;
  const std::string svg = read_file(out / "forget_quality_vs_utility.svg");
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_NE(read_file(out / "report.md").find("![forget quality vs model utility]"),
            std::string::npos);
  // The printed table is the summary's, rendered.
  Result rendered = run({"demo", "--render", (out / "summary.json").string()});
  ASSERT_EQ(rendered.status, 0) << rendered.err;
  EXPECT_NE(r.out.find(rendered.out), std::string::npos) << rendered.out;

  const json sum = json::parse(read_file(out / "summary.json"));
  ASSERT_EQ(sum.at("seeds").size(), 1u);
  std::map<std::string, json> m;
  for (const json& x : sum.at("models")) m[x.at("name")] = x;
  ASSERT_EQ(m.size(), 8u);
  auto v = [&](const std::string& model, const char* metric) {
    return m.at(model).at(metric).at(0).get<double>();
  };
  // Both trained models met the criterion (the demo stops otherwise): recorded and ≥ 0.95.
  const json& tr = sum.at("training").at(0);
  EXPECT_GE(tr.at("target").at("forget_rouge").get<double>(), 0.95);
  EXPECT_GE(tr.at("target").at("retain_rouge").get<double>(), 0.95);
  EXPECT_GE(tr.at("retain_only").at("retain_rouge").get<double>(), 0.95);
  EXPECT_LE(tr.at("target").at("final_loss").get<double>(), 0.1);
  // The README's claims: the target memorised what the retain-only model never saw; every method
  // lowers the forget probability; GA pays with utility.
  EXPECT_GT(v("target", "forget_rouge"), v("retain-only", "forget_rouge") + 0.5);
  for (const char* method : {"ga", "graddiff", "npo", "simnpo", "mollm", "ngdiff"})
    EXPECT_LT(v(method, "forget_prob"), v("target", "forget_prob")) << method;
  EXPECT_LT(v("ga", "model_utility"), 0.5 * v("target", "model_utility"));
  // The retain-only model against its own truth ratios: forget quality 1.
  const json rj = json::parse(read_file(out / "seed-0" / "eval" / "retain-only" / "eval.json"));
  EXPECT_DOUBLE_EQ(rj.at("summary").at("forget_quality").get<double>(), 1.0);
  // One colour per model in every plot: the legend swatch before each name.
  auto legend_color = [](const std::string& svg_text, const std::string& name) {
    const size_t at = svg_text.find(">" + name + "</text>");
    if (at == std::string::npos) return std::string("missing");
    const size_t fill = svg_text.rfind("fill=\"", at);
    return svg_text.substr(fill + 6, 7);
  };
  const std::string fl = read_file(out / "forget_loss.svg"),
                    rl = read_file(out / "retain_loss.svg");
  std::set<std::string> colors;
  for (const char* method : {"ga", "graddiff", "npo", "simnpo", "mollm", "ngdiff"}) {
    const std::string c = legend_color(svg, method);
    EXPECT_EQ(legend_color(fl, method), c) << method;
    EXPECT_EQ(legend_color(rl, method), c) << method;
    colors.insert(c);
  }
  EXPECT_EQ(colors.size(), 6u);
}

// A model that misses the training criterion stops the demo before any table is printed.
TEST(CliDemo, AnUndertrainedModelStopsTheDemoWithTheReason) {
  const fs::path out = temp_path("demo_undertrained");
  Result r = run({"demo", "--quick", "--epochs", "1", "--out", out.string(), "--threads", "2"});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_NE(r.err.find("seed 0: the target did not reach the training criterion"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("ROUGE-L"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--epochs"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("| target |"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(out / "summary.json"));
  EXPECT_FALSE(fs::exists(out / "report.md"));
}

// Over seeds a cell is mean ± sample sd, forget quality median [min, max] (values by hand).
TEST(CliDemo, RenderShowsTheSpreadOverSeeds) {
  const fs::path f = temp_path("demo_summary.json");
  {
    std::ofstream o(f);
    o << R"({"seeds": [0, 1, 2], "models": [{"name": "npo",
          "forget_quality": [1e-4, 0.5, 0.02], "model_utility": [0.5, 0.6, 0.7],
          "forget_rouge": [0.1, 0.1, 0.1], "retain_rouge": [0.9, 1.0, 0.95],
          "forget_prob": [0.25, 0.5, 0.75]}]})";
  }
  Result r = run({"demo", "--render", f.string()});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("| npo | 0.020 [1.0e-04, 0.500] | 0.600 ± 0.100 | 0.100 ± 0.000 | "
                       "0.950 ± 0.050 | 0.500 ± 0.250 |"),
            std::string::npos)
      << r.out;
  // A model with fewer values than seeds is named.
  {
    std::ofstream o(f);
    o << R"({"seeds": [0, 1], "models": [{"name": "ga", "forget_quality": [0.1],
          "model_utility": [0.5, 0.6], "forget_rouge": [0, 0], "retain_rouge": [1, 1],
          "forget_prob": [0, 0]}]})";
  }
  Result bad = run({"demo", "--render", f.string()});
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.err.find("model ga has 1 values of forget_quality for 2 seeds"), std::string::npos)
      << bad.err;
  // A value a run did not produce (null) is left out and counted; no value at all is "–".
  {
    std::ofstream o(f);
    o << R"({"seeds": [0, 1, 2], "models": [{"name": "ga", "forget_quality": [null, null, null],
          "model_utility": [0.5, null, 0.7], "forget_rouge": [0, 0, 0], "retain_rouge": [1, 1, 1],
          "forget_prob": [0, 0, 0]}]})";
  }
  Result gaps = run({"demo", "--render", f.string()});
  ASSERT_EQ(gaps.status, 0) << gaps.err;
  EXPECT_NE(gaps.out.find("| ga | – | 0.600 ± 0.141 (2 of 3) |"), std::string::npos) << gaps.out;
  // Not a summary, or no seeds: an error naming the file, never a crash.
  for (const char* text : {R"({"models": []})", R"({"seeds": [], "models": []})"}) {
    std::ofstream(f) << text;
    Result r2 = run({"demo", "--render", f.string()});
    EXPECT_EQ(r2.status, 1) << text;
    EXPECT_NE(r2.err.find("demo"), std::string::npos) << r2.err;
  }
}

// The README's demo table is the demo's own: `lethe demo --render` of the committed summary.json
// (written by a full `lethe demo` run; tools/demo/update_readme.sh copies it and the plots into
// docs/demo/ and splices this table into the README).
TEST(CliDemo, ReadmeTableIsWhatTheDemoPrints) {
  const std::string root = lethe::testing::source_dir();
  const std::string summary = root + "/docs/demo/summary.json";
  const json sum = json::parse(read_file(summary));
  EXPECT_FALSE(sum.at("quick").get<bool>());
  EXPECT_GE(sum.at("seeds").size(), 3u) << "the README's claims are stated over >= 3 seeds";
  EXPECT_EQ(sum.at("models").size(), 8u) << "target, retain-only and the six methods";
  EXPECT_EQ(sum.at("generated_by").get<std::string>().find("--methods"), std::string::npos);
  EXPECT_EQ(sum.at("generated_by").get<std::string>().find("--epochs"), std::string::npos);
  Result r = run({"demo", "--render", summary});
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string readme = read_file(root + "/README.md");
  const std::string begin = "<!-- demo-table: begin -->\n", end = "<!-- demo-table: end -->";
  const size_t a = readme.find(begin), b = readme.find(end);
  ASSERT_NE(a, std::string::npos);
  ASSERT_NE(b, std::string::npos);
  EXPECT_EQ(readme.substr(a + begin.size(), b - a - begin.size()), r.out);
}

TEST(CliDemo, EngineDemoStillRuns) {
  Result r = run({"demo", "engine", "--steps", "3"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("held_out_accuracy"), std::string::npos) << r.out;
}

// ---- eval ---------------------------------------------------------------------------------------

TEST(CliEval, PrintsTheTableAndWritesEvalJson) {
  const std::string f = "tests/trainers/fixtures/tofu_eval/";
  const fs::path out = temp_path("eval_out");
  Result r = run({"eval", "--set", "model.path=" + f + "model", "--set",
                  "eval.forget=" + f + "forget.json", "--set", "eval.retain=" + f + "retain.json",
                  "--set", "eval.max_new_tokens=8", "--set", "output.dir=" + out.string()});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("| forget |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| retain |"), std::string::npos) << r.out;
  EXPECT_TRUE(fs::exists(out / "eval.json"));
  expect_error(run({"eval", "--set", "model.path=" + f + "model", "--set", "output.dir=x"}), 2,
               "eval.forget");
  expect_error(run({"eval", "--set", "model.path=" + f + "model", "--set", "output.dir=x", "--set",
                    "eval.forget=no/such.json"}),
               1, "no/such.json");
}

TEST(CliEval, MembershipInferenceAndAClassifierFromTheCommandLine) {
  const std::string f = "tests/trainers/fixtures/tofu_eval/";
  const std::string x = "tests/trainers/fixtures/eval_extra/";
  const fs::path out = temp_path("eval_mia");
  Result r =
      run({"eval", "--set", "model.path=" + f + "model", "--set",
           "eval.mia.forget=" + x + "mia_forget.json", "--set",
           "eval.mia.holdout=" + x + "mia_holdout.json", "--set",
           "eval.perplexity=" + x + "mia_forget.json", "--set", "output.dir=" + out.string()});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("| min_k_plus_plus |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("perplexity"), std::string::npos) << r.out;
  const json j = json::parse(read_file(out / "eval.json"));
  EXPECT_EQ(j["mia"]["forget"].size(), 8u);
  EXPECT_TRUE(j.contains("perplexity"));
  expect_error(run({"eval", "--set", "model.path=" + f + "model", "--set", "output.dir=x", "--set",
                    "eval.mia.forget=" + x + "mia_forget.json"}),
               2, "eval.mia.holdout");
  expect_error(run({"eval", "--set", "model.path=" + f + "model", "--set", "output.dir=x", "--set",
                    "eval.harmful.prompts=" + x + "classify.json", "--set",
                    "eval.harmful.classifier=" + f + "model"}),
               1, "id2label");
  // lethe finetune with model.head=classifier trains the judge.
  const fs::path clf = temp_path("classifier_cli");
  Result t =
      run({"finetune", "--set", "model.path=" + f + "model", "--set", "model.head=classifier",
           "--set", "data.format=jsonl", "--set", "data.train=" + x + "classify.json", "--set",
           "trainer.max_steps=2", "--set", "trainer.batch_size=3", "--set", "trainer.grad_accum=1",
           "--set", "output.dir=" + clf.string()});
  ASSERT_EQ(t.status, 0) << t.err;
  EXPECT_NE(t.out.find("\"head\":\"classifier\""), std::string::npos) << t.out;
  EXPECT_TRUE(fs::exists(clf / "model.safetensors"));
}

// ---- merge -----------------------------------------------------------------------------------

TEST(CliMerge, MergesAPeftAdapterAndRefusesAWrongOne) {
  const std::string base = "tests/trainers/fixtures/methods/model";
  const std::string lora = "tests/trainers/fixtures/lora/";
  const fs::path out = temp_path("merged");
  Result r =
      run({"merge", "--model", base, "--adapter", lora + "adapter", "--output", out.string()});
  ASSERT_EQ(r.status, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_EQ(j["layers_merged"], 6);
  EXPECT_TRUE(fs::exists(out / "model.safetensors"));
  EXPECT_TRUE(fs::exists(out / "config.json"));
  expect_error(run({"merge", "--model", "tests/trainers/fixtures/tofu_eval/model", "--adapter",
                    lora + "adapter", "--output", temp_path("merged_bad").string()}),
               1, "another base model");
  expect_error(run({"merge", "--model", base, "--adapter", lora + "nope", "--output", "x"}), 1,
               "nope");
  expect_error(run({"merge", "--model", base}), 2, "--adapter");
}

}  // namespace

// ---- what lethe refuses before it starts (hardening round 2, docs/cli.md) ----------------------

namespace {

// A private copy of the tiny model, so a run that wrongly wrote over it could not hurt a fixture.
fs::path model_copy(const std::string& name) {
  const fs::path dir = temp_path(name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(kMethods + "/model"))
    fs::copy_file(e.path(), dir / e.path().filename());
  return dir;
}

std::vector<std::string> unlearn_keys(const fs::path& model, const std::string& out) {
  return {"model.path=" + model.string(), "method.name=ga",
          "data.forget=" + kMethods + "/forget.jsonl", "output.dir=" + out};
}

std::vector<std::string> with_sets(std::vector<std::string> args,
                                   const std::vector<std::string>& kv) {
  for (const std::string& s : kv) {
    args.push_back("--set");
    args.push_back(s);
  }
  return args;
}

}  // namespace

// output.dir is, lies inside, or contains an input (also through a symlink, "..", a trailing
// slash): exit 2 naming both keys, before anything is written; the model's bytes are unchanged.
TEST(CliRefuses, AnOutputOverAnInput) {
  const fs::path model = model_copy("own_model");
  const std::string weights = read_file(model / "model.safetensors");
  const fs::path link = temp_path("link_to_model");
  fs::remove(link);
  fs::create_directory_symlink(model, link);
  struct Case {
    std::string out, needle;
  };
  const std::vector<Case> cases = {
      {model.string(), "output.dir (" + model.string() + ") is model.path"},
      {model.string() + "/", "is model.path"},
      {model.string() + "/../" + model.filename().string(), "is model.path"},
      {link.string(), "is model.path"},
      {(model / "sub").string(), "lies inside model.path"},
      {model.parent_path().string(), "contains model.path"}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.out);
    expect_error(run(train_args("unlearn", "", unlearn_keys(model, c.out))), 2, c.needle);
    expect_error(
        run(train_args("finetune", "",
                       {"model.path=" + model.string(), "data.train=" + kMethods + "/forget.jsonl",
                        "output.dir=" + c.out})),
        2, c.needle);
  }
  // The reference, the data files and an eval reference are inputs too.
  const fs::path ref = model_copy("own_reference");
  auto keys = unlearn_keys(model, ref.string());
  keys.push_back("model.reference=" + ref.string());
  keys[1] = "method.name=npo";
  keys.push_back("data.retain=" + kMethods + "/retain.jsonl");
  expect_error(run(train_args("unlearn", "", keys)), 2, "is model.reference");
  expect_error(run(train_args("unlearn", "", unlearn_keys(model, kMethods))), 2,
               "contains data.forget");
  expect_error(run(with_sets({"eval"}, {"model.path=" + model.string(),
                                        "eval.perplexity=" + kMethods + "/forget.jsonl",
                                        "eval.format=jsonl", "output.dir=" + model.string()})),
               2, "output.dir");
  EXPECT_TRUE(read_file(model / "model.safetensors") == weights) << "the model was rewritten";
  EXPECT_FALSE(fs::exists(model / "run.json"));
  EXPECT_FALSE(fs::exists(model / "sub"));
}

TEST(CliRefuses, MergeOverItsBaseOrAdapter) {
  const fs::path model = model_copy("merge_base");
  const std::string weights = read_file(model / "model.safetensors");
  const std::string adapter = "tests/trainers/fixtures/lora/adapter";
  expect_error(
      run({"merge", "--model", model.string(), "--adapter", adapter, "--output", model.string()}),
      2, "--output (" + model.string() + ") is --model");
  expect_error(run({"merge", "--model", model.string(), "--adapter", adapter, "--output",
                    adapter + "/merged"}),
               2, "lies inside --adapter");
  EXPECT_TRUE(read_file(model / "model.safetensors") == weights) << "the base was rewritten";
}

// An output.dir that is a file, or lies under one, is named as the key before any step.
TEST(CliRefuses, AnOutputThatCannotBeADirectory) {
  const fs::path file = temp_path("a_file");
  std::ofstream(file) << "x";
  const fs::path model = model_copy("out_file_model");
  expect_error(run(train_args("unlearn", "", unlearn_keys(model, file.string()))), 2,
               "output.dir: " + file.string() + " is a regular file");
  expect_error(run(train_args("unlearn", "", unlearn_keys(model, (file / "sub").string()))), 2,
               "output.dir");
  EXPECT_EQ(read_file(file), "x");
}

// A recipe mistake is exit 2 wherever it is found: a parameter the method does not read, no
// LoRA target, a rank above the layers' size, more threads than the machine can start.
TEST(CliRefuses, RecipeMistakesFoundLateAreStillUsageErrors) {
  const fs::path model = model_copy("late_model");
  const std::string out = temp_path("late_out").string();
  auto keys = unlearn_keys(model, out);
  keys[1] = "method.name=graddiff";
  keys.push_back("data.retain=" + kMethods + "/retain.jsonl");
  auto beta = keys;
  beta.push_back("method.beta=0.5");
  expect_error(run(train_args("unlearn", "", beta)), 2, "method.beta");
  auto targets = keys;
  targets.push_back("lora.enabled=true");
  targets.push_back("lora.targets=");
  expect_error(run(train_args("unlearn", "", targets)), 2, "lora.targets");
  auto rank = keys;
  rank.push_back("lora.enabled=true");
  rank.push_back("lora.r=64");
  expect_error(run(train_args("unlearn", "", rank)), 2, "r = 64 exceeds");
  auto threads = keys;
  threads.push_back("trainer.threads=4096");
  expect_error(run(train_args("unlearn", "", threads)), 2, "trainer.threads");
  expect_error(run({"demo", "--quick", "--threads", "4096", "--out", temp_path("d").string()}), 2,
               "--threads = 4096");
  expect_error(run({"bench", "ops", "--threads", "1000"}), 2, "--threads = 1000");
  EXPECT_FALSE(fs::exists(out));
}

// YAML that yaml-cpp accepts but a recipe must not: a key or section twice, a quote never
// closed, a second document, control characters. Each names the key (where there is one) and
// the line.
TEST(CliRefuses, RecipesYamlShouldNotAccept) {
  const fs::path model = model_copy("yaml_model");
  const std::string head = "model:\n  path: " + model.string() + "\nmethod:\n  name: ga\n" +
                           "data:\n  forget: " + kMethods + "/forget.jsonl\n  format: tokenized\n";
  const std::string out = "output:\n  dir: " + temp_path("yaml_out").string() + "\n";
  struct Case {
    std::string name, text, needle;
  };
  const std::vector<Case> cases = {
      {"dup_key", head + out + "trainer:\n  lr: 0.1\n  lr: 0.2\n",
       ":12: key 'trainer.lr' is given twice (first at line 11)"},
      {"dup_section", head + out + "trainer:\n  lr: 0.1\ntrainer:\n  seed: 3\n",
       ":12: section 'trainer' is given twice (first at line 10)"},
      {"unclosed", head + "output:\n  dir: \"" + temp_path("yaml_out").string() + "\n",
       ":9: output.dir: the quoted value is never closed"},
      {"two_docs", head + out + "---\ntrainer:\n  lr: 0.1\n", ":10: a second YAML document"},
      {"nul", head + out + std::string("trainer:\n  scheduler: con\0stant\n", 31), ":11: "},
      // a control character that only a YAML escape makes, in a value (line 2)
      {"escape",
       "model:\n  labels: \"safe\\x01,harmful\"\n" + head.substr(head.find('\n') + 1) + out,
       ":2: model.labels: the value holds the control character U+0001"}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const fs::path recipe = temp_path(c.name + ".yaml");
    std::ofstream(recipe, std::ios::binary) << c.text;
    const Result r = run({"unlearn", "--config", recipe.string()});
    expect_error(r, 2, recipe.string() + c.needle);
    if (c.name == "nul") expect_error(r, 2, "control character U+0000");
  }
  expect_error(run({"unlearn", "--set", std::string("trainer.scheduler=con\x02stant")}), 2,
               "control character U+0002");
}

// ---- the CUDA path end to end -------------------------------------------------------------------
// Suites named *OnCuda run only in the `cuda` label (tests/CMakeLists.txt): in the emulator's tree
// of `make test`, and on a GPU through tools/gpu_check.sh. Each command runs with --device cuda /
// model.device=cuda and is held to transformers' numbers or to the same run on the CPU.

namespace {

using lethe::testing::nan_max;
using lethe::testing::within;

bool test_on_cuda() {
  const char* d = std::getenv("LETHE_TEST_DEVICE");
  return d != nullptr && std::string(d) == "cuda";
}

void require_cuda_label() {
  ASSERT_TRUE(test_on_cuda()) << "an *OnCuda test runs with LETHE_TEST_DEVICE=cuda only";
}

// Every tensor of two safetensors files, as doubles by name.
std::map<std::string, std::vector<double>> weights_of(const fs::path& file);

TEST(CliOnCuda, ScoreAndGenerateMatchTransformers) {
  require_cuda_label();
  for (const char* name : {"pre_ln", "post_ln_proj", "f16", "sharded", "head_dim5"})
    check_score_fixture(name, "f32", 1e-4, 0, "cuda");
  const double u = 1.0 / 512;  // bf16 GEMM operands (CliScore.Bf16MatmulsStayWithinBf16Rounding)
  for (const char* name : {"pre_ln", "head_dim5"})
    check_score_fixture(name, "bf16", 4 * u, 4 * u, "cuda");
  check_greedy_fixtures("cuda");
}

// unlearn and finetune with model.device=cuda write the CPU run's losses and weights.
TEST(CliOnCuda, UnlearnAndFinetuneMatchTheCpuRun) {
  require_cuda_label();
  struct Case {
    std::string cmd;
    std::vector<std::string> sets;
  };
  const std::vector<Case> cases = {
      {"unlearn",
       {"method.name=npo", "data.forget=" + kMethods + "/forget.jsonl",
        "data.retain=" + kMethods + "/retain.jsonl"}},
      {"unlearn",
       {"method.name=ngdiff", "data.forget=" + kMethods + "/forget.jsonl",
        "data.retain=" + kMethods + "/retain.jsonl"}},
      {"finetune", {"data.train=" + kMethods + "/retain.jsonl"}}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.cmd + " " + c.sets[0]);
    std::vector<std::string> on_cuda = c.sets;
    on_cuda.push_back("model.device=cuda");
    const fs::path cpu_out = temp_path(c.cmd + "_cpu"), cuda_out = temp_path(c.cmd + "_cuda");
    Result a = run(train_args(c.cmd, cpu_out.string(), c.sets));
    Result b = run(train_args(c.cmd, cuda_out.string(), on_cuda));
    ASSERT_EQ(a.status, 0) << a.err;
    ASSERT_EQ(b.status, 0) << b.err;
    const json ra = json::parse(read_file(cpu_out / "run.json"));
    const json rb = json::parse(read_file(cuda_out / "run.json"));
    EXPECT_EQ(rb.at("config").at("model.device"), "cuda");
    ASSERT_EQ(ra.at("steps").size(), 2u);  // trainer.max_steps=2 (train_args)
    ASSERT_EQ(rb.at("steps").size(), 2u);
    for (size_t s = 0; s < ra.at("steps").size(); ++s)
      for (const char* field : {"loss", "grad_norm"})
        for (const auto& [k, v] : ra.at("steps")[s].at(field).items())
          EXPECT_TRUE(
              within(rb.at("steps")[s].at(field).at(k).get<double>(), v.get<double>(), 1e-6, 1e-4))
              << "step " << s + 1 << " " << field << " " << k;
    const auto wa = weights_of(cpu_out / "model.safetensors");
    const auto wb = weights_of(cuda_out / "model.safetensors");
    ASSERT_FALSE(wa.empty());
    ASSERT_EQ(wa.size(), wb.size());
    // AdamW moves every weight by about lr per step whatever its gradient's size. k_proj's bias
    // has an exact gradient of zero (softmax cancels it), so both runs step on rounding noise of
    // either sign there: those may differ by up to lr per step (as in the method fixtures).
    const auto w0 = weights_of(kMethods + "/model/model.safetensors");
    const double lr = 0.01, steps = 2;
    double worst = 0, moved = 0;
    for (const auto& [name, v] : wa) {
      ASSERT_TRUE(wb.count(name)) << name;
      ASSERT_EQ(wb.at(name).size(), v.size()) << name;
      ASSERT_TRUE(w0.count(name) && w0.at(name).size() == v.size()) << name;
      const bool noise = name.find("k_proj.bias") != std::string::npos;
      for (size_t i = 0; i < v.size(); ++i) {
        const double d = std::fabs(wb.at(name)[i] - v[i]);
        moved = nan_max(moved, std::fabs(v[i] - w0.at(name)[i]));
        if (noise)
          EXPECT_LE(d, lr * steps) << name << "[" << i << "]";
        else
          worst = nan_max(worst, d);
      }
    }
    EXPECT_GT(moved, 0.5 * lr) << "the CPU run did not move the weights";
    EXPECT_LE(worst, 1e-4 * moved) << "largest weight difference between the CUDA and the CPU run";
  }
}

// model.dtype: bf16 on CUDA (bf16 GEMM operands; attention's q·kᵀ and p·v on tensor cores, head
// dim 16) trains like f32: six fine-tuning steps on the tiny TOFU model, every step's loss
// within 1 % of the f32 run's, and the runs not identical (the bf16 paths ran).
TEST(CliOnCuda, Bf16LossCurveWithinOnePercentOfF32) {
  require_cuda_label();
  const std::string f = "tests/trainers/fixtures/tofu_eval/";
  auto train = [&](const std::string& dtype) {
    const fs::path out = temp_path("bf16_curve_" + dtype);
    Result r = run({"finetune",
                    "--set",
                    "model.path=" + f + "model",
                    "--set",
                    "data.format=tofu",
                    "--set",
                    "data.train=" + f + "retain.json",
                    "--set",
                    "model.device=cuda",
                    "--set",
                    "model.dtype=" + dtype,
                    "--set",
                    "trainer.batch_size=4",
                    "--set",
                    "trainer.grad_accum=1",
                    "--set",
                    "trainer.max_steps=6",
                    "--set",
                    "trainer.lr=1e-3",
                    "--set",
                    "trainer.warmup_steps=0",
                    "--set",
                    "output.dir=" + out.string()});
    EXPECT_EQ(r.status, 0) << r.err;
    const json record = json::parse(read_file(out / "run.json"));
    std::vector<double> losses;
    for (const auto& s : record.at("steps")) losses.push_back(s.at("loss").at("train_nll"));
    return losses;
  };
  const std::vector<double> f32 = train("f32"), bf16 = train("bf16");
  ASSERT_EQ(f32.size(), 6u);
  ASSERT_EQ(bf16.size(), 6u);
  double worst = 0;
  for (size_t i = 0; i < f32.size(); ++i)
    worst = nan_max(worst, std::fabs(bf16[i] - f32[i]) / std::fabs(f32[i]));
  EXPECT_LE(worst, 0.01);
  EXPECT_GT(worst, 0.0) << "bf16 gave f32's losses exactly";
  EXPECT_LT(f32.back(), f32.front());
}

// lethe eval on model.device=cuda prints the CPU's table (TOFU probabilities, ROUGE, truth ratio).
TEST(CliOnCuda, EvalMatchesTheCpu) {
  require_cuda_label();
  const std::string f = "tests/trainers/fixtures/tofu_eval/";
  auto eval_on = [&](const std::string& device) {
    const fs::path out = temp_path("eval_" + device);
    Result r = run({"eval", "--set", "model.path=" + f + "model", "--set",
                    "eval.forget=" + f + "forget.json", "--set", "eval.retain=" + f + "retain.json",
                    "--set", "eval.max_new_tokens=8", "--set", "model.device=" + device, "--set",
                    "output.dir=" + out.string()});
    EXPECT_EQ(r.status, 0) << r.err;
    return json::parse(read_file(out / "eval.json"));
  };
  const json cpu = eval_on("cpu"), gpu = eval_on("cuda");
  int compared = 0;
  std::function<void(const json&, const json&, const std::string&)> walk =
      [&](const json& a, const json& b, const std::string& at) {
        ASSERT_EQ(a.type(), b.type()) << at;
        if (a.is_object()) {
          for (const auto& [k, v] : a.items()) {
            if (k == "config" || k == "seconds" || k == "device") continue;
            ASSERT_TRUE(b.contains(k)) << at << "." << k;
            walk(v, b.at(k), at + "." + k);
          }
        } else if (a.is_array()) {
          ASSERT_EQ(a.size(), b.size()) << at;
          for (size_t i = 0; i < a.size(); ++i)
            walk(a[i], b[i], at + "[" + std::to_string(i) + "]");
        } else if (a.is_number_float()) {
          EXPECT_TRUE(within(b.get<double>(), a.get<double>(), 1e-5, 1e-4)) << at;
          ++compared;
        } else {
          EXPECT_EQ(a, b) << at;  // generated texts, counts: identical
        }
      };
  walk(cpu, gpu, "eval.json");
  EXPECT_GT(compared, 10) << "eval.json holds fewer numbers than expected";
}

std::map<std::string, std::vector<double>> weights_of(const fs::path& file) {
  // safetensors: 8-byte header length, JSON header, f32 data (the fixtures' dtype).
  const std::string bytes = read_file(file);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  const json header = json::parse(bytes.substr(8, n));
  std::map<std::string, std::vector<double>> out;
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") continue;
    EXPECT_EQ(info.at("dtype"), "F32") << name;
    const size_t begin = info.at("data_offsets")[0], end = info.at("data_offsets")[1];
    std::vector<float> v((end - begin) / 4);
    std::memcpy(v.data(), bytes.data() + 8 + n + begin, end - begin);
    out[name] = std::vector<double>(v.begin(), v.end());
  }
  return out;
}

}  // namespace
