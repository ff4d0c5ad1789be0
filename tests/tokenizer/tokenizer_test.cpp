// Tokenizer tests. Reference ids and texts come from HuggingFace transformers/tokenizers and the
// sentencepiece package via tools/fixtures/make_tokenizer_fixtures.py; nothing here compares
// lethe against itself except round trips.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "engine/error.h"
#include "models/tokenizer/bpe.h"
#include "models/tokenizer/tokenizer.h"
#include "models/tokenizer/utf8.h"
#include "tests/common/paths.h"
#include "tests/tokenizer/fixture_io.h"

namespace fs = std::filesystem;
using lethe::testing::tokenizer::read_jsonl;
using lethe::testing::tokenizer::read_text;
using lethe::testing::tokenizer::show;
using lethe::testing::tokenizer::write_text;
using lethe::tokenizer::BPETokenizer;
using lethe::tokenizer::load_tokenizer;
using nlohmann::json;

namespace {

const fs::path kFixtures = lethe::testing::tokenizer::fixtures_dir();
const fs::path kBpeDir = kFixtures / "bpe";

// The rows of a fixture file, which must have exactly as many rows as the generator wrote
// (tools/fixtures/make_tokenizer_fixtures.py): a truncated or emptied fixture fails.
std::vector<json> fixture_rows(const std::string& file) {
  static const std::map<std::string, size_t> expected = {{"bpe_encode.jsonl", 593},
                                                         {"bpe_decode.jsonl", 154},
                                                         {"bpe_variant_encode.jsonl", 208},
                                                         {"spm_encode.jsonl", 593},
                                                         {"spm_decode.jsonl", 228}};
  auto rows = read_jsonl(kFixtures / file);
  EXPECT_EQ(rows.size(), expected.at(file)) << "rows in tests/tokenizer/fixtures/" << file;
  return rows;
}

std::vector<int64_t> ids_of(const json& j) {
  return j.get<std::vector<int64_t>>();
}

// A fresh directory under the system temp dir, removed at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    static std::atomic<int> counter{0};
    path = fs::temp_directory_path() /
           ("lethe_tok_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  void copy_from(const fs::path& dir, std::initializer_list<const char*> names) const {
    for (const char* n : names) fs::copy_file(dir / n, path / n);
  }
};

// Runs f and expects a lethe::Error whose message contains every one of `parts`.
template <typename F>
void expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "expected lethe::Error";
  } catch (const lethe::Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg << " lacks " << p;
  }
}

// Compares every fixture string's ids; `key` picks the reference ("ids" or "ids_files").
void expect_fixture_ids(const lethe::tokenizer::Tokenizer& tok, const char* key) {
  const auto rows = fixture_rows("bpe_encode.jsonl");
  int mismatches = 0;
  for (const auto& r : rows) {
    const std::string text = r["text"];
    const auto want = ids_of(r.contains(key) ? r[key] : r["ids"]);
    const auto got = tok.encode(text);
    if (got != want && ++mismatches <= 5) {
      ADD_FAILURE() << "text " << json(text).dump() << "\n want " << show(want) << "\n  got "
                    << show(got);
    }
  }
  EXPECT_EQ(mismatches, 0);
}

}  // namespace

TEST(ByteLevelBpe, EncodeMatchesHuggingFaceFromTokenizerJson) {
  auto tok = load_tokenizer(kBpeDir.string());
  expect_fixture_ids(*tok, "ids");
}

TEST(ByteLevelBpe, EncodeMatchesHuggingFaceFromVocabAndMerges) {
  TempDir dir;
  dir.copy_from(kBpeDir,
                {"vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"});
  auto tok = load_tokenizer(dir.path.string());
  expect_fixture_ids(*tok, "ids_files");
}

TEST(ByteLevelBpe, LinearAndHeapMergeOrdersBothMatchHuggingFace) {
  for (size_t limit : {size_t{0}, size_t{1} << 30}) {
    auto options = lethe::tokenizer::bpe_options(kBpeDir.string());
    ASSERT_TRUE(options.has_value());
    options->linear_merge_max = limit;
    BPETokenizer tok(std::move(*options));
    expect_fixture_ids(tok, "ids");
  }
}

TEST(ByteLevelBpe, MergesWrittenAsStringsAreAccepted) {
  json j = json::parse(read_text(kBpeDir / "tokenizer.json"));
  ASSERT_TRUE(j["model"]["merges"][0].is_array());  // the fixture uses the pair form
  for (auto& m : j["model"]["merges"]) m = m[0].get<std::string>() + " " + m[1].get<std::string>();
  TempDir dir;
  write_text(dir.path / "tokenizer.json", j.dump());
  dir.copy_from(kBpeDir, {"tokenizer_config.json"});
  auto tok = load_tokenizer(dir.path.string());
  expect_fixture_ids(*tok, "ids");
}

TEST(ByteLevelBpe, RoundTripsEveryFixtureString) {
  auto tok = load_tokenizer(kBpeDir.string());
  for (const auto& r : fixture_rows("bpe_encode.jsonl")) {
    const std::string text = r["text"];
    EXPECT_EQ(tok->decode(tok->encode(text, false)), text);
    EXPECT_EQ(tok->decode(tok->encode(text, true)), "</s>" + text);
  }
}

TEST(ByteLevelBpe, DecodeMatchesHuggingFace) {
  auto tok = load_tokenizer(kBpeDir.string());
  const auto rows = fixture_rows("bpe_decode.jsonl");
  for (const auto& r : rows) {
    EXPECT_EQ(tok->decode(ids_of(r["ids"]), r["skip_special"].get<bool>()),
              r["text"].get<std::string>())
        << r.dump();
  }
}

TEST(ByteLevelBpe, AddedTokenOptionsPrefixSpaceAndTemplateBosMatchHuggingFace) {
  // lstrip/rstrip and non-special added tokens, add_prefix_space, BOS from TemplateProcessing.
  auto tok = load_tokenizer((kFixtures / "bpe_variant").string());
  EXPECT_EQ(tok->bos_id(), 2);
  const auto rows = fixture_rows("bpe_variant_encode.jsonl");
  for (const auto& r : rows) {
    const std::string text = r["text"];
    const auto ids = tok->encode(text);
    EXPECT_EQ(ids, ids_of(r["ids"])) << json(text).dump();
    EXPECT_EQ(tok->decode(ids_of(r["ids"])), r["decoded"].get<std::string>()) << r.dump();
    EXPECT_EQ(tok->decode(ids_of(r["ids"]), true), r["decoded_skip"].get<std::string>())
        << r.dump();
  }
}

TEST(ByteLevelBpe, SpecialTokensAndIdsFollowOpt) {
  // The fixture vocabulary puts <s>, <pad>, </s>, <unk> at 0..3 as OPT does and has 1500 ids.
  auto tok = load_tokenizer(kBpeDir.string());
  EXPECT_EQ(tok->vocab_size(), 1500);
  EXPECT_EQ(tok->bos_id(), 2);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_EQ(tok->pad_id(), 1);
  EXPECT_EQ(tok->token_to_id("</s>"), 2);
  EXPECT_EQ(tok->token_to_id("<pad>"), 1);
  EXPECT_EQ(tok->token_to_id("no such token"), std::nullopt);
  EXPECT_EQ(tok->id_to_token(0), "<s>");
  EXPECT_EQ(tok->id_to_token(-1), "");
  EXPECT_EQ(tok->id_to_token(1500), "");
  EXPECT_EQ(tok->encode("", true), std::vector<int64_t>{2});
  EXPECT_TRUE(tok->encode("", false).empty());
  // Ids without a token are skipped by decode, as HF does.
  EXPECT_EQ(tok->decode({-5, 1500, 99999}), "");
}

TEST(ByteLevelBpe, VocabAndMergesWithoutConfigsUseOptDefaults) {
  TempDir dir;
  dir.copy_from(kBpeDir, {"vocab.json", "merges.txt"});
  auto tok = load_tokenizer(dir.path.string());
  EXPECT_EQ(tok->bos_id(), 2);
  EXPECT_EQ(tok->pad_id(), 1);
  // Same ids as the OPT-style configs give (</s> and <pad> split out, BOS prepended).
  expect_fixture_ids(*tok, "ids_files");
}

TEST(ByteLevelBpe, AddBosTokenFalseInConfigIsHonoured) {
  TempDir dir;
  dir.copy_from(kBpeDir, {"vocab.json", "merges.txt"});
  write_text(dir.path / "tokenizer_config.json",
             R"({"add_bos_token": false, "bos_token": "</s>", "pad_token": "<pad>"})");
  auto tok = load_tokenizer(dir.path.string());
  const auto rows = fixture_rows("bpe_encode.jsonl");
  for (size_t i = 0; i < 50; ++i) {
    auto want = ids_of(rows[i].contains("ids_files") ? rows[i]["ids_files"] : rows[i]["ids"]);
    want.erase(want.begin());
    EXPECT_EQ(tok->encode(rows[i]["text"].get<std::string>()), want);
  }
}

TEST(ByteLevelBpe, ConcurrentEncodesAgree) {
  auto tok = load_tokenizer(kBpeDir.string());
  const auto rows = fixture_rows("bpe_encode.jsonl");
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (size_t i = t; i < rows.size() * 2; i += 3) {
        const auto& r = rows[i % rows.size()];
        if (tok->encode(r["text"].get<std::string>()) != ids_of(r["ids"])) ++mismatches;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TEST(ByteLevelBpe, LongInputsFinishAndRoundTrip) {
  auto tok = load_tokenizer(kBpeDir.string());
  for (const std::string& s :
       {std::string(1 << 20, 'a'), std::string(1 << 20, ' '), std::string(1 << 18, '\n'),
        [] {
          std::string e;
          for (int i = 0; i < 50000; ++i) e += "\xF0\x9F\x98\x80";  // U+1F600
          return e;
        }(),
        [] {
          std::string e;
          for (int i = 0; i < 100000; ++i) e += "</s>ab ";
          return e;
        }()}) {
    const auto ids = tok->encode(s, false);
    EXPECT_FALSE(ids.empty());
    EXPECT_EQ(tok->decode(ids), s);
  }
}

TEST(ByteLevelBpe, NonUtf8InputIsAnErrorNamingTheOffset) {
  auto tok = load_tokenizer(kBpeDir.string());
  expect_error([&] { tok->encode("abc\xFF"); }, {"UTF-8", "byte offset 3"});
  expect_error([&] { tok->encode("ab\xC3"); }, {"byte offset 2"});            // truncated
  expect_error([&] { tok->encode("\xC0\xAFx"); }, {"byte offset 0"});         // overlong
  expect_error([&] { tok->encode("x\xED\xA0\x80"); }, {"byte offset 1"});     // surrogate
  expect_error([&] { tok->encode("\xF4\x90\x80\x80"); }, {"byte offset 0"});  // > U+10FFFF
  expect_error([&] { tok->encode(std::string("ok\0\x80", 4)); }, {"byte offset 3"});
}

TEST(Utf8, InvalidOffsetsAndLossyDecoding) {
  using lethe::tokenizer::find_invalid_utf8;
  using lethe::tokenizer::utf8_lossy;
  EXPECT_EQ(find_invalid_utf8("h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80"), std::nullopt);
  EXPECT_EQ(find_invalid_utf8("ab\xE2\x82"), 2u);
  // Python: b'\xf0\x9f\x98'.decode('utf-8','replace') == '\ufffd';
  // b'\xed\xa0\x80' -> 3 x U+FFFD; b'\xe2\x82\xac\xe2' -> '\u20ac\ufffd'.
  EXPECT_EQ(utf8_lossy("\xF0\x9F\x98"), "\xEF\xBF\xBD");
  EXPECT_EQ(utf8_lossy("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(utf8_lossy("\xE2\x82\xAC\xE2"), "\xE2\x82\xAC\xEF\xBF\xBD");
}

TEST(ByteLevelBpeFiles, MissingFilesAreErrorsNamingThem) {
  expect_error([] { load_tokenizer("/nonexistent/lethe/tokenizer"); }, {"/nonexistent/lethe"});
  TempDir empty;
  expect_error([&] { load_tokenizer(empty.path.string()); },
               {"no tokenizer files", "tokenizer.json"});
  TempDir only_vocab;
  only_vocab.copy_from(kBpeDir, {"vocab.json"});
  expect_error([&] { load_tokenizer(only_vocab.path.string()); }, {"merges.txt", "missing"});
  TempDir only_merges;
  only_merges.copy_from(kBpeDir, {"merges.txt"});
  expect_error([&] { load_tokenizer(only_merges.path.string()); }, {"vocab.json", "missing"});
}

TEST(ByteLevelBpeFiles, MalformedVocabJson) {
  for (const std::string& bad :
       {std::string("{\"a\": 1,"), std::string("[1, 2]"), std::string("{\"a\": \"x\"}"),
        std::string("{\"a\": -4}"), std::string("{\"a\": 1, \"b\": 1}"), std::string(""),
        std::string("{\"a\": 99999999999}")}) {
    TempDir dir;
    write_text(dir.path / "vocab.json", bad);
    dir.copy_from(kBpeDir, {"merges.txt"});
    expect_error([&] { load_tokenizer(dir.path.string()); }, {"vocab.json"});
  }
}

TEST(ByteLevelBpeFiles, MalformedMergesTxt) {
  const std::string good = read_text(kBpeDir / "merges.txt");
  const size_t nl = good.find('\n');
  const std::string first = good.substr(nl + 1, good.find('\n', nl + 1) - nl - 1);  // valid merge
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"#version: 0.2\n" + first + "\na b c\n", "line 3"},            // three tokens
      {"#version: 0.2\n" + first + "\n\n" + first + "\n", "line 3"},  // empty line inside
      {first + "\nnotatoken x\n", "line 2"},                          // not in the vocabulary
      {"\xC4\xA0t\n", "line 1"},                                      // one token
      {good + "\xC3\xA9\xC3\xA9 \xC3\xA9\n", "merges.txt line"},      // merged token not in vocab
  };
  for (const auto& [text, where] : cases) {
    TempDir dir;
    dir.copy_from(kBpeDir, {"vocab.json"});
    write_text(dir.path / "merges.txt", text);
    expect_error([&] { load_tokenizer(dir.path.string()); }, {"merges.txt", where});
  }
}

TEST(ByteLevelBpeFiles, MalformedTokenizerJson) {
  const json good = json::parse(read_text(kBpeDir / "tokenizer.json"));
  std::vector<std::string> cases = {"{", "[]", "{\"model\": 3}", "null"};
  auto edit = [&](auto&& f) {
    json j = good;
    f(j);
    cases.push_back(j.dump());
  };
  edit([](json& j) { j["model"].erase("vocab"); });
  edit([](json& j) { j["model"]["vocab"] = json::array(); });
  edit([](json& j) { j["model"]["merges"] = "a b"; });
  edit([](json& j) { j["model"]["merges"][0] = json::array({"a"}); });
  edit([](json& j) { j["model"]["merges"][0] = 7; });
  edit([](json& j) { j["model"]["merges"][0] = "abc"; });
  edit([](json& j) { j["model"]["merges"][0] = json::array({"zz", "qq"}); });
  edit([](json& j) { j["model"]["type"] = "WordPiece"; });
  edit([](json& j) { j["pre_tokenizer"] = json{{"type", "Whitespace"}}; });
  edit([](json& j) { j["added_tokens"][0]["id"] = "zero"; });
  edit([](json& j) { j["added_tokens"][0]["id"] = 1; });  // "<s>" and "<pad>" both id 1
  edit([](json& j) { j["model"]["vocab"]["Ġ"] = 1.5; });
  for (const auto& text : cases) {
    TempDir dir;
    write_text(dir.path / "tokenizer.json", text);
    expect_error([&] { load_tokenizer(dir.path.string()); }, {"tokenizer.json"});
  }
}

TEST(ByteLevelBpeFiles, MalformedConfigJson) {
  TempDir dir;
  dir.copy_from(kBpeDir, {"vocab.json", "merges.txt"});
  write_text(dir.path / "tokenizer_config.json", "{\"add_bos_token\": \"yes\"}");
  expect_error([&] { load_tokenizer(dir.path.string()); }, {"tokenizer_config.json"});
  // A special token missing from the vocabulary gets the next id, as transformers adds it.
  write_text(dir.path / "tokenizer_config.json", "{\"bos_token\": \"<new>\"}");
  auto tok = load_tokenizer(dir.path.string());
  EXPECT_EQ(tok->vocab_size(), 1501);
  EXPECT_EQ(tok->bos_id(), 1500);
  EXPECT_EQ(tok->encode("<new>", true), (std::vector<int64_t>{1500, 1500}));
  write_text(dir.path / "tokenizer_config.json", "{}");
  write_text(dir.path / "special_tokens_map.json", "{\"bos_token\": [1]}");
  expect_error([&] { load_tokenizer(dir.path.string()); }, {"special_tokens_map.json"});
}

// ---- SentencePiece ------------------------------------------------------------------------

TEST(SentencePiece, EncodeMatchesSentencePiecePackage) {
  auto tok = load_tokenizer((kFixtures / "spm").string());
  const auto rows = fixture_rows("spm_encode.jsonl");
  ASSERT_GE(tok->bos_id(), 0);
  int mismatches = 0;
  for (const auto& r : rows) {
    const std::string text = r["text"];
    const auto want = ids_of(r["ids"]);
    const auto got = tok->encode(text, false);
    if (got != want && ++mismatches <= 5) {
      ADD_FAILURE() << json(text).dump() << "\n want " << show(want) << "\n  got " << show(got);
    }
    auto with_bos = want;
    with_bos.insert(with_bos.begin(), tok->bos_id());
    EXPECT_EQ(tok->encode(text, true), with_bos);
  }
  EXPECT_EQ(mismatches, 0);
}

TEST(SentencePiece, DecodeMatchesSentencePiecePackage) {
  auto tok = load_tokenizer((kFixtures / "spm").string());
  for (const auto& r : fixture_rows("spm_decode.jsonl")) {
    EXPECT_EQ(tok->decode(ids_of(r["ids"])), r["text"].get<std::string>()) << r.dump();
  }
  EXPECT_EQ(tok->decode({-1, tok->vocab_size()}), "");
  EXPECT_EQ(tok->id_to_token(tok->vocab_size()), "");
  EXPECT_EQ(tok->token_to_id(tok->id_to_token(5)), 5);
  EXPECT_EQ(tok->token_to_id("definitely not a piece"), std::nullopt);
}

TEST(SentencePiece, BadModelAndBadInput) {
  TempDir dir;
  write_text(dir.path / "tokenizer.model", "this is not a protobuf");
  expect_error([&] { load_tokenizer(dir.path.string()); }, {"tokenizer.model"});
  auto tok = load_tokenizer((kFixtures / "spm").string());
  expect_error([&] { tok->encode("ok\xE2\x82"); }, {"byte offset 2"});
}
