// Llama-3, Qwen2 and Llama-2 style tokenizers (issue 23) against transformers' AutoTokenizer.
// The folders under tests/tokenizer/fixtures/ replicate the hub files' structure and every
// expected id and text comes from AutoTokenizer (tools/fixtures/make_tokenizer_fixtures.py,
// section "hf"); nothing here compares lethe against itself.
#include <gtest/gtest.h>
#include <utf8proc.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "models/tokenizer/bpe.h"
#include "models/tokenizer/normalizer.h"
#include "models/tokenizer/sentencepiece.h"
#include "models/tokenizer/tokenizer.h"
#include "models/tokenizer/utf8.h"
#include "tests/common/expect_error.h"
#include "tests/common/temp_dir.h"
#include "tests/tokenizer/fixture_io.h"

namespace fs = std::filesystem;
using lethe::testing::expect_error;
using lethe::testing::tokenizer::fixtures_dir;
using lethe::testing::tokenizer::read_jsonl;
using lethe::testing::tokenizer::read_text;
using lethe::testing::tokenizer::show;
using lethe::testing::tokenizer::write_text;
using lethe::tokenizer::load_tokenizer;
using lethe::tokenizer::Tokenizer;
using nlohmann::json;

namespace {

// Rows the generator wrote; a truncated fixture fails.
constexpr size_t kEncodeRows = 2000, kDecodeRows = 1712;

const std::vector<json>& encode_rows() {
  static const std::vector<json> rows = read_jsonl(fixtures_dir() / "hf_encode.jsonl");
  return rows;
}

const std::vector<json>& decode_rows() {
  static const std::vector<json> rows = read_jsonl(fixtures_dir() / "hf_decode.jsonl");
  return rows;
}

// A row's reference for `family`: llama2_legacy and llama2_file are stored only where they differ
// from llama2.
const json& reference(const json& row, const std::string& family) {
  if (row.contains(family)) return row[family];
  EXPECT_TRUE(family == "llama2_legacy" || family == "llama2_file") << family;
  return row["llama2"];
}

std::string scratch(const std::string& tag) {
  return lethe::testing::scratch_dir("tok", tag);
}

// A copy of fixture folder `from` (its files `names`) with tokenizer_config.json replaced.
std::string folder_with_config(const std::string& from, std::initializer_list<const char*> names,
                               const json& config) {
  const std::string dir = scratch(from);
  for (const char* n : names) fs::copy_file(fixtures_dir() / from / n, fs::path(dir) / n);
  write_text(fs::path(dir) / "tokenizer_config.json", config.dump());
  return dir;
}

// llama2_legacy's tokenizer.json read as written: transformers applies no class of its own to a
// PreTrainedTokenizerFast folder (the generator's "llama2_file" ids).
std::string llama2_file_folder() {
  json config = json::parse(read_text(fixtures_dir() / "llama2_legacy" / "tokenizer_config.json"));
  config["tokenizer_class"] = "PreTrainedTokenizerFast";
  return folder_with_config("llama2_legacy", {"tokenizer.json"}, config);
}

std::string folder_of(const std::string& family) {
  if (family == "llama2_file") return llama2_file_folder();
  return (fixtures_dir() / family).string();
}

// Every fixture string: ids identical to AutoTokenizer, and decode(ids, skip_special = true)
// identical to its decode. Returns the number of strings whose ids differ.
int compare_with_autotokenizer(const Tokenizer& tok, const std::string& family,
                               bool report = true) {
  const auto& rows = encode_rows();
  EXPECT_EQ(rows.size(), kEncodeRows) << "rows in hf_encode.jsonl";
  int mismatches = 0;
  for (const auto& row : rows) {
    const std::string text = row["text"];
    const json& ref = reference(row, family);
    const auto want = ref["ids"].get<std::vector<int64_t>>();
    const auto got = tok.encode(text);
    if (got != want && ++mismatches <= 5 && report) {
      ADD_FAILURE() << family << ": text " << json(text).dump() << "\n want " << show(want)
                    << "\n  got " << show(got);
    }
    if (report) {
      const std::string decoded_skip = ref.value("decoded_skip", text);
      EXPECT_EQ(tok.decode(want, true), decoded_skip) << family << ": " << row.dump();
    }
  }
  return mismatches;
}

class AutoTokenizerIds : public ::testing::TestWithParam<std::string> {};

TEST_P(AutoTokenizerIds, EveryFixtureStringEncodesAndDecodesAsAutoTokenizer) {
  const std::string family = GetParam();
  auto tok = load_tokenizer(folder_of(family));
  EXPECT_EQ(compare_with_autotokenizer(*tok, family), 0);
}

TEST_P(AutoTokenizerIds, LinearAndHeapMergeOrdersAgree) {
  const std::string family = GetParam();
  for (size_t limit : {size_t{0}, size_t{1} << 30}) {
    auto options = lethe::tokenizer::bpe_options(folder_of(family));
    ASSERT_TRUE(options.has_value());
    options->linear_merge_max = limit;
    lethe::tokenizer::BPETokenizer tok(std::move(*options));
    EXPECT_EQ(compare_with_autotokenizer(tok, family), 0) << "linear_merge_max " << limit;
  }
}

INSTANTIATE_TEST_SUITE_P(HfFamilies, AutoTokenizerIds,
                         ::testing::Values("llama3", "qwen2", "llama2", "llama2_legacy",
                                           "llama2_file"));

TEST(HfFamilies, DecodeMatchesAutoTokenizer) {
  const auto& rows = decode_rows();
  EXPECT_EQ(rows.size(), kDecodeRows) << "rows in hf_decode.jsonl";
  std::map<std::string, std::unique_ptr<Tokenizer>> toks;
  for (const char* f : {"llama3", "qwen2", "llama2", "llama2_legacy"}) {
    toks[f] = load_tokenizer((fixtures_dir() / f).string());
  }
  for (const auto& r : rows) {
    const auto ids = r["ids"].get<std::vector<int64_t>>();
    const Tokenizer& tok = *toks.at(r["tokenizer"].get<std::string>());
    EXPECT_EQ(tok.decode(ids, false), r["text"].get<std::string>()) << r.dump();
    EXPECT_EQ(tok.decode(ids, true), r["text_skip"].get<std::string>()) << r.dump();
  }
}

TEST(HfVariants, PipelineOptionsMatchAutoTokenizer) {
  // Small tokenizer.json files for the options the family replicas do not use (Metaspace with
  // split and its decoder, NFKC / NFD, normalized added tokens behind Prepend, lstrip / rstrip,
  // an EOS in the template, unk without byte fallback, no decoder, a literal Split...).
  const auto rows = read_jsonl(fixtures_dir() / "hf_variants.jsonl");
  EXPECT_EQ(rows.size(), 1125u) << "rows in hf_variants.jsonl";
  std::map<std::string, std::unique_ptr<Tokenizer>> toks;
  int mismatches = 0;
  for (const auto& r : rows) {
    const std::string name = r["tokenizer"], text = r["text"];
    auto& tok = toks[name];
    if (!tok) tok = load_tokenizer((fixtures_dir() / "hf_variants" / name).string());
    const auto want = r["ids"].get<std::vector<int64_t>>();
    const auto got = tok->encode(text);
    if (got != want && ++mismatches <= 10) {
      ADD_FAILURE() << name << ": text " << json(text).dump() << "\n want " << show(want)
                    << "\n  got " << show(got);
    }
    if (r.value("hf_decode_panics", false)) continue;  // HF's Strip panics on empty text
    const std::string decoded = r.value("decoded", text);
    EXPECT_EQ(tok->decode(want), decoded) << r.dump();
    EXPECT_EQ(tok->decode(want, true), r.value("decoded_skip", decoded)) << r.dump();
  }
  EXPECT_EQ(mismatches, 0);
  EXPECT_EQ(toks.size(), 9u);
}

TEST(HfFamilies, SpecialTokenIds) {
  // Llama-3: 2040 BPE ids, then 256 specials in Llama-3's order (BOS first, <|eot_id|> tenth).
  auto llama3 = load_tokenizer((fixtures_dir() / "llama3").string());
  EXPECT_EQ(llama3->vocab_size(), 2296);
  EXPECT_EQ(llama3->bos_id(), 2040);
  EXPECT_EQ(llama3->eos_id(), 2049);
  EXPECT_EQ(llama3->pad_id(), -1);
  EXPECT_EQ(llama3->token_to_id("<|start_header_id|>"), 2046);
  EXPECT_EQ(llama3->encode("", true), std::vector<int64_t>{2040});
  EXPECT_TRUE(llama3->encode("", false).empty());
  // Qwen2: no BOS, eos <|im_end|>, pad <|endoftext|>.
  auto qwen2 = load_tokenizer((fixtures_dir() / "qwen2").string());
  const int64_t endoftext = *qwen2->token_to_id("<|endoftext|>");
  EXPECT_EQ(qwen2->vocab_size(), endoftext + 22);
  EXPECT_EQ(qwen2->bos_id(), -1);
  EXPECT_EQ(qwen2->eos_id(), endoftext + 2);
  EXPECT_EQ(qwen2->pad_id(), endoftext);
  EXPECT_TRUE(qwen2->encode("", true).empty());
  // Llama-2: unk 0, bos 1, eos 2, byte pieces 3..258.
  for (const char* f : {"llama2", "llama2_legacy"}) {
    auto llama2 = load_tokenizer((fixtures_dir() / f).string());
    EXPECT_EQ(llama2->vocab_size(), 1000);
    EXPECT_EQ(llama2->bos_id(), 1);
    EXPECT_EQ(llama2->eos_id(), 2);
    EXPECT_EQ(llama2->pad_id(), -1);
    EXPECT_EQ(llama2->token_to_id("<0x0A>"), 13);
    EXPECT_EQ(llama2->encode("", true), std::vector<int64_t>{1});
  }
}

TEST(HfFamilies, Qwen2FromVocabAndMergesMatchesTokenizerJson) {
  // The Qwen2Tokenizer class gives a vocab.json + merges.txt folder the same pipeline (NFC,
  // Qwen2's split pattern), so AutoTokenizer's ids are those of the tokenizer.json folder.
  const std::string dir = scratch("qwen2_vm");
  for (const char* n : {"vocab.json", "merges.txt", "tokenizer_config.json"}) {
    fs::copy_file(fixtures_dir() / "qwen2" / n, fs::path(dir) / n);
  }
  auto tok = load_tokenizer(dir);
  EXPECT_EQ(compare_with_autotokenizer(*tok, "qwen2"), 0);
}

// The fixtures exercise the options that set these families apart: with each option switched
// off, some fixture strings tokenise differently.
TEST(HfFamilies, FixturesDependOnTheFamiliesOptions) {
  auto edited = [](const std::string& family, const json& config, auto&& edit) {
    json j = json::parse(read_text(fixtures_dir() / family / "tokenizer.json"));
    edit(j);
    const std::string dir = scratch(family + "_edit");
    write_text(fs::path(dir) / "tokenizer.json", j.dump());
    write_text(fs::path(dir) / "tokenizer_config.json", config.dump());
    return load_tokenizer(dir);
  };
  const json plain = {{"tokenizer_class", "PreTrainedTokenizerFast"}};
  // Llama-3: ignore_merges (pre-tokens that are tokens of their own without a merge path).
  auto no_ignore =
      edited("llama3", json::parse(read_text(fixtures_dir() / "llama3" / "tokenizer_config.json")),
             [](json& j) { j["model"]["ignore_merges"] = false; });
  EXPECT_GT(compare_with_autotokenizer(*no_ignore, "llama3", false), 0);
  // Qwen2's tokenizer.json read as written (no class) gives AutoTokenizer's ids; without its
  // NFC normalizer it does not.
  auto as_file = edited("qwen2", plain, [](json&) {});
  EXPECT_EQ(compare_with_autotokenizer(*as_file, "qwen2", false), 0);
  auto no_nfc = edited("qwen2", plain, [](json& j) { j["normalizer"] = nullptr; });
  EXPECT_GT(compare_with_autotokenizer(*no_nfc, "qwen2", false), 0);
  // Llama-3's pattern groups digits by three, Qwen2's splits them: swapped, ids differ.
  auto qwen_split = edited("llama3", plain, [](json& j) {
    j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] =
        R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  });
  EXPECT_GT(compare_with_autotokenizer(*qwen_split, "llama3", false), 0);
  // Llama-2: legacy (prepend_scheme "always") and non-legacy ("first") differ.
  auto legacy_as_new = load_tokenizer((fixtures_dir() / "llama2_legacy").string());
  EXPECT_GT(compare_with_autotokenizer(*legacy_as_new, "llama2", false), 0);
}

TEST(HfFamilies, Llama2WordsAreCutOnlyWhereNoTokenSpansTheCut) {
  // lethe cuts a Metaspace word before each "▁" that follows another character (a speed-up that
  // cannot change ids while no token holds such a pair). A vocabulary with one ("d▁w", reachable
  // by no merge) turns the cut off; the ids must not change either way.
  json j = json::parse(read_text(fixtures_dir() / "llama2" / "tokenizer.json"));
  j["model"]["vocab"]["d\xe2\x96\x81w"] = 1000;
  const std::string dir = scratch("llama2_uncut");
  write_text(fs::path(dir) / "tokenizer.json", j.dump());
  fs::copy_file(fixtures_dir() / "llama2" / "tokenizer_config.json",
                fs::path(dir) / "tokenizer_config.json");
  auto tok = load_tokenizer(dir);
  EXPECT_EQ(tok->vocab_size(), 1001);
  EXPECT_EQ(compare_with_autotokenizer(*tok, "llama2"), 0);
}

TEST(HfFamilies, TokenizerModelOnlyLlamaFoldersAreConvertedAsTransformersDoes) {
  // Without tokenizer.json, transformers converts tokenizer.model to a BPE (vocabulary and merges
  // from the pieces) for a LlamaTokenizer: the generator checks that AutoTokenizer then gives the
  // tokenizer.json folder's ids, so those are the references here.
  for (const char* family : {"llama2", "llama2_legacy"}) {
    const std::string dir = scratch(std::string(family) + "_spm");
    for (const char* n : {"tokenizer.model", "tokenizer_config.json"}) {
      fs::copy_file(fixtures_dir() / family / n, fs::path(dir) / n);
    }
    auto tok = load_tokenizer(dir);
    EXPECT_EQ(dynamic_cast<lethe::tokenizer::SentencePieceTokenizer*>(tok.get()), nullptr);
    EXPECT_EQ(compare_with_autotokenizer(*tok, family), 0) << family;
  }
  // ... and the generator checks that without add_bos_token no BOS is added, and that
  // add_eos_token appends the EOS (transformers builds the template from the config then).
  json config = json::parse(read_text(fixtures_dir() / "llama2" / "tokenizer_config.json"));
  config.erase("add_bos_token");
  config["add_eos_token"] = true;
  auto tok = load_tokenizer(folder_with_config("llama2", {"tokenizer.model"}, config));
  int mismatches = 0;
  for (const auto& row : encode_rows()) {
    auto want = row["llama2"]["ids"].get<std::vector<int64_t>>();
    want.erase(want.begin());
    want.push_back(2);
    mismatches += tok->encode(row["text"].get<std::string>()) != want;
  }
  EXPECT_EQ(mismatches, 0);
  // Other classes keep SentencePiece itself (the spm fixture has no config at all).
  EXPECT_NE(dynamic_cast<lethe::tokenizer::SentencePieceTokenizer*>(
                load_tokenizer((fixtures_dir() / "spm").string()).get()),
            nullptr);
}

TEST(HfFamilies, LlamaClassWithByteLevelTokenizerJsonIsReadAsWritten) {
  // Hub Llama-3 derivatives often name LlamaTokenizer; AutoTokenizer then loads the byte-level
  // tokenizer.json as written (PreTrainedTokenizerFast), and so does lethe.
  json config = json::parse(read_text(fixtures_dir() / "llama3" / "tokenizer_config.json"));
  config["tokenizer_class"] = "LlamaTokenizerFast";
  auto tok = load_tokenizer(folder_with_config("llama3", {"tokenizer.json"}, config));
  EXPECT_EQ(compare_with_autotokenizer(*tok, "llama3"), 0);
}

TEST(HfFamilies, LongInputsFinishAndRoundTrip) {
  auto llama3 = load_tokenizer((fixtures_dir() / "llama3").string());
  auto qwen2 = load_tokenizer((fixtures_dir() / "qwen2").string());
  auto llama2 = load_tokenizer((fixtures_dir() / "llama2").string());
  std::string combining;
  for (int i = 0; i < 100000; ++i) combining += "e\xCC\x81";  // e + U+0301: NFC makes é
  std::string composed;
  for (int i = 0; i < 100000; ++i) composed += "\xC3\xA9";
  std::string chat;
  for (int i = 0; i < 20000; ++i) chat += "<|eot_id|><|im_start|>user\n<s>Hi 12345 </s>";
  for (const std::string& s : {std::string(1 << 20, 'a'), std::string(1 << 20, ' '),
                               std::string(1 << 18, '\n'), std::string(1 << 20, '7'), chat}) {
    EXPECT_EQ(llama3->decode(llama3->encode(s, false)), s);
    EXPECT_EQ(qwen2->decode(qwen2->encode(s, false)), s);
    EXPECT_FALSE(llama2->encode(s, false).empty());
  }
  EXPECT_EQ(qwen2->decode(qwen2->encode(combining, false)), composed);
  EXPECT_EQ(llama2->decode(llama2->encode(std::string(1 << 20, 'a'), false)),
            std::string(1 << 20, 'a'));
}

TEST(HfFamilies, ConcurrentEncodesAgree) {
  const auto& rows = encode_rows();
  for (const char* family : {"llama3", "qwen2", "llama2"}) {
    auto tok = load_tokenizer((fixtures_dir() / family).string());
    std::atomic<int> mismatches{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        for (size_t i = t; i < rows.size(); i += 2) {
          const auto& r = rows[i];
          if (tok->encode(r["text"].get<std::string>()) !=
              r[family]["ids"].get<std::vector<int64_t>>()) {
            ++mismatches;
          }
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(mismatches.load(), 0) << family;
  }
}

// ---- NFC stretch by stretch equals NFC of the whole text ------------------------------------

TEST(Normalizer, NfcStretchByStretchEqualsUtf8procOnTheWholeText) {
  // lethe normalises only the stretches around code points NFC may change (normalizer.cpp);
  // random mixes of every kind of code point NFC treats specially must give utf8proc's NFC of
  // the whole text.
  const std::vector<uint32_t> pool = {
      'a',    'e',    'o',    'A',    'Z',    ' ',     '1',    0xE9,   0x1EC7, 0xC5,
      0x0301, 0x0323, 0x0308, 0x031B, 0x0345, 0x05B0,  0x0E38, 0x212B, 0x2126, 0x0340,
      0x0341, 0x0374, 0x0958, 0xFB1D, 0x0344, 0x1100,  0x1161, 0x11A8, 0xAC00, 0xAC01,
      0x0CBF, 0x0CD5, 0x0CC6, 0x0CC2, 0x0BC6, 0x0BBE,  0x0BD7, 0x0D46, 0x0D3E, 0x09C7,
      0x09BE, 0x09D7, 0x1E9B, 0x0307, 0x4E00, 0x1F600, 0x0F73, 0x0F71, 0x0F72, 0x1025,
      0x102E, 0x1B05, 0x1B35, 0x3099, 0x304B, 0x0F40,  0x0FB5, 0x1DF6};
  const lethe::tokenizer::Normalizer nfc(
      {lethe::tokenizer::NormalizerStep::unicode(lethe::tokenizer::NormalizerStep::Kind::nfc)});
  std::mt19937 rng(2024);
  int mismatches = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    std::string text;
    const int n = 1 + static_cast<int>(rng() % 12);
    for (int k = 0; k < n; ++k) lethe::tokenizer::append_utf8(text, pool[rng() % pool.size()]);
    utf8proc_uint8_t* whole = nullptr;
    const auto len =
        utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                     static_cast<utf8proc_ssize_t>(text.size()), &whole,
                     static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
    ASSERT_GE(len, 0);
    const std::string want(reinterpret_cast<const char*>(whole), static_cast<size_t>(len));
    std::free(whole);
    if (nfc.apply(text) != want && ++mismatches <= 5) {
      ADD_FAILURE() << "text " << json(text).dump() << ": want " << json(want).dump() << ", got "
                    << json(nfc.apply(text)).dump();
    }
  }
  EXPECT_EQ(mismatches, 0);
}

// ---- what lethe cannot reproduce is an error naming the file and the field -------------------

TEST(HfFamiliesFiles, UnsupportedComponentsAreErrorsNamingFileAndField) {
  const json base = json::parse(read_text(fixtures_dir() / "llama3" / "tokenizer.json"));
  const json plain = {{"tokenizer_class", "PreTrainedTokenizerFast"}};
  struct Case {
    std::function<void(json&)> edit;
    std::vector<std::string> want;
  };
  const std::vector<Case> cases = {
      {[](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["type"] = "Whitespace"; },
       {"pre_tokenizer.pretokenizers[0].type 'Whitespace' is not supported"}},
      {[](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["invert"] = true; },
       {"pre_tokenizer.pretokenizers[0].invert: true is not supported"}},
      {[](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed"; },
       {"pre_tokenizer.pretokenizers[0].behavior 'Removed' is not supported"}},
      {[](json& j) {
         j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"Regex", "(a"}};
       },
       {"pre_tokenizer.pretokenizers[0].pattern", "PCRE2 cannot compile"}},
      {[](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = 3; },
       {"pre_tokenizer.pretokenizers[0].pattern must be"}},
      {[](json& j) {
         j["pre_tokenizer"] = {{"type", "Digits"}, {"individual_digits", true}};
       },
       {"pre_tokenizer.type 'Digits' is not supported"}},
      {[](json& j) {
         auto& list = j["pre_tokenizer"]["pretokenizers"];
         std::swap(list[0], list[1]);
       },
       {"ByteLevel pre-tokenizer must be the last one"}},
      {[](json& j) {
         j["normalizer"] = {{"type", "Lowercase"}};
       },
       {"normalizer.type 'Lowercase' is not supported"}},
      {[](json& j) {
         j["normalizer"] = {{"type", "Sequence"},
                            {"normalizers", {{{"type", "NFC"}}, {{"type", "StripAccents"}}}}};
       },
       {"normalizer.normalizers[1].type 'StripAccents' is not supported"}},
      {[](json& j) {
         j["normalizer"] = {{"type", "Replace"}, {"pattern", {{"Regex", " +"}}}, {"content", " "}};
       },
       {"normalizer.pattern.Regex", "not supported"}},
      {[](json& j) {
         j["decoder"] = {{"type", "WordPiece"}};
       },
       {"decoder.type 'WordPiece' is not supported"}},
      {[](json& j) {
         j["decoder"] = {{"type", "Strip"}, {"content", "ab"}, {"start", 1}, {"stop", 0}};
       },
       {"decoder.content must be one character"}},
      {[](json& j) { j["post_processor"]["processors"][1]["type"] = "RobertaProcessing"; },
       {"post_processor.processors[1].type 'RobertaProcessing' is not supported"}},
      {[](json& j) { j["post_processor"]["processors"][1]["special_tokens"] = json::object(); },
       {"post_processor.processors[1].special_tokens.<|begin_of_text|> is missing"}},
      {[](json& j) { j["model"]["type"] = "Unigram"; }, {"model.type 'Unigram' is not supported"}},
      {[](json& j) { j["model"]["dropout"] = 0.1; }, {"model.dropout is not supported"}},
      {[](json& j) { j["model"]["byte_fallback"] = "yes"; }, {"model.byte_fallback must be true"}},
      {[](json& j) { j["added_tokens"][3]["single_word"] = true; },
       {"added_tokens[3].single_word: true is not supported"}},
  };
  for (const Case& c : cases) {
    json j = base;
    c.edit(j);
    const std::string dir = scratch("bad_json");
    write_text(fs::path(dir) / "tokenizer.json", j.dump());
    write_text(fs::path(dir) / "tokenizer_config.json", plain.dump());
    std::vector<std::string> want = c.want;
    want.push_back(dir + "/tokenizer.json");
    expect_error([&] { load_tokenizer(dir); }, want);
  }
}

TEST(HfFamiliesFiles, ANonBpeTokenizerJsonBesideATokenizerModelFallsBackToSentencePiece) {
  json j = json::parse(read_text(fixtures_dir() / "llama2" / "tokenizer.json"));
  j["model"]["type"] = "Unigram";
  const std::string dir = scratch("unigram");
  write_text(fs::path(dir) / "tokenizer.json", j.dump());
  fs::copy_file(fixtures_dir() / "llama2" / "tokenizer.model", fs::path(dir) / "tokenizer.model");
  auto tok = load_tokenizer(dir);
  EXPECT_NE(dynamic_cast<lethe::tokenizer::SentencePieceTokenizer*>(tok.get()), nullptr);
}

}  // namespace
