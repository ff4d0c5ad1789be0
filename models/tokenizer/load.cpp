// load_tokenizer: finds and parses HuggingFace / SentencePiece tokenizer files in a directory,
// and applies what transformers' tokenizer classes do on top of the files.
#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "engine/error.h"
#include "engine/io/file_util.h"
#include "engine/io/json.h"
#include "models/tokenizer/bpe.h"
#include "models/tokenizer/sentencepiece.h"
#include "models/tokenizer/sentencepiece_proto.h"
#include "models/tokenizer/tokenizer.h"
#include "models/tokenizer/tokenizer_json.h"

namespace lethe::tokenizer {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kMetaspace = "\xe2\x96\x81";  // "▁"
// transformers' Qwen2Tokenizer pre-tokenising pattern (single digits, unlike Llama-3's \p{N}{1,3}).
constexpr std::string_view kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Every file goes through lethe::io: regular files only (a FIFO cannot block), bounded size, JSON
// with the project's depth and size limits; errors name the path.
std::string read_file(const fs::path& path) {
  return io::read_text_file(path.string());
}

json read_json(const fs::path& path) {
  return io::read_json_file(path.string());
}

// Whether something is at `path` (a symlink loop or an unreadable directory is an error naming
// it, not "absent").
bool present(const fs::path& path) {
  return io::file_kind(path.string()) != io::FileKind::missing;
}

// A special-token field of tokenizer_config.json / special_tokens_map.json: "tok", an
// AddedToken object {"content": "tok", ...}, or null.
std::optional<AddedToken> token_field(const json& v, const std::string& where) {
  if (v.is_null()) return std::nullopt;
  AddedToken t;
  if (v.is_string()) {
    t.content = v.get<std::string>();
  } else if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    t.content = v["content"].get<std::string>();
    t.lstrip = v.value("lstrip", false);
    t.rstrip = v.value("rstrip", false);
    t.special = v.value("special", true);
    t.normalized = v.value("normalized", false);
    LETHE_CHECK(!v.value("single_word", false), where, ": single_word true is not supported");
  } else {
    LETHE_FAIL(where, ": expected a token string or {\"content\": ...}, got ", v.dump());
  }
  if (t.content.empty()) return std::nullopt;
  return t;
}

std::optional<bool> optional_bool(const json& obj, const char* key, const std::string& where) {
  if (!obj.contains(key) || obj[key].is_null()) return std::nullopt;
  LETHE_CHECK(obj[key].is_boolean(), where, ": field '", key, "' must be true or false");
  return obj[key].get<bool>();
}

// A named special token: `set` when a config has the key at all (null included: "none").
struct NamedToken {
  bool set = false;
  std::optional<AddedToken> token;
};

// What tokenizer_config.json and special_tokens_map.json say (both optional).
struct TokenizerConfig {
  bool present = false;
  std::optional<bool> add_bos, add_eos, add_prefix_space, legacy;
  std::string tokenizer_class;  // without a trailing "Fast"
  NamedToken bos, eos, unk, pad;
  std::vector<AddedToken> extra;  // additional_special_tokens, added_tokens_decoder
};

void read_special_fields(const json& j, const std::string& where, TokenizerConfig& c) {
  LETHE_CHECK(j.is_object(), where, ": expected a JSON object");
  auto field = [&](const char* key, NamedToken& slot) {
    if (!slot.set && j.contains(key)) slot = {true, token_field(j[key], where + ": " + key)};
  };
  field("bos_token", c.bos);
  field("eos_token", c.eos);
  field("unk_token", c.unk);
  field("pad_token", c.pad);
  if (j.contains("additional_special_tokens") && j["additional_special_tokens"].is_array()) {
    for (const auto& v : j["additional_special_tokens"]) {
      if (auto t = token_field(v, where + ": additional_special_tokens")) c.extra.push_back(*t);
    }
  }
}

TokenizerConfig read_tokenizer_config(const fs::path& dir) {
  TokenizerConfig c;
  const fs::path config = dir / "tokenizer_config.json";
  if (present(config)) {
    c.present = true;
    const json j = read_json(config);
    const std::string where = config.string();
    read_special_fields(j, where, c);
    c.add_bos = optional_bool(j, "add_bos_token", where);
    c.add_eos = optional_bool(j, "add_eos_token", where);
    c.add_prefix_space = optional_bool(j, "add_prefix_space", where);
    c.legacy = optional_bool(j, "legacy", where);
    if (j.contains("tokenizer_class") && j["tokenizer_class"].is_string()) {
      c.tokenizer_class = j["tokenizer_class"].get<std::string>();
      if (c.tokenizer_class.size() > 4 &&
          c.tokenizer_class.compare(c.tokenizer_class.size() - 4, 4, "Fast") == 0) {
        c.tokenizer_class.resize(c.tokenizer_class.size() - 4);
      }
    }
    if (j.contains("added_tokens_decoder")) {
      const json& d = j["added_tokens_decoder"];
      LETHE_CHECK(d.is_object(), where, ": added_tokens_decoder must be an object");
      for (const auto& [key, v] : d.items()) {
        auto t = token_field(v, where + ": added_tokens_decoder." + key);
        if (!t) continue;
        try {
          size_t used = 0;
          t->id = std::stoi(key, &used);
          LETHE_CHECK(used == key.size() && t->id >= 0, "");
        } catch (const std::exception&) {
          LETHE_FAIL(where, ": added_tokens_decoder key '", key, "' is not an id");
        }
        c.extra.push_back(*t);
      }
    }
  }
  const fs::path map = dir / "special_tokens_map.json";
  if (present(map)) {
    c.present = true;
    read_special_fields(read_json(map), map.string(), c);
  }
  return c;
}

// Where the vocabulary came from.
enum class Source { tokenizer_json, vocab_merges, sentencepiece };

// The special tokens transformers' tokenizer classes default to when the configs do not name them
// (their __init__ arguments), for the classes lethe reproduces.
void apply_class_defaults(TokenizerConfig& c) {
  auto fill = [](NamedToken& slot, const char* content) {
    if (slot.set) return;
    slot.set = true;
    if (content != nullptr) slot.token = AddedToken{content};
  };
  if (c.tokenizer_class == "LlamaTokenizer") {
    fill(c.bos, "<s>");
    fill(c.eos, "</s>");
    fill(c.unk, "<unk>");
  } else if (c.tokenizer_class == "Qwen2Tokenizer") {
    fill(c.bos, nullptr);
    fill(c.eos, "<|endoftext|>");
    fill(c.unk, "<|endoftext|>");
    fill(c.pad, "<|endoftext|>");
  }
}

// Adds to `o.added_tokens` every token the configs name that is not there yet; ids come from the
// vocab, from added_tokens_decoder, or are appended after the largest id (as transformers does).
void merge_config_tokens(const TokenizerConfig& c, BPEOptions& o) {
  std::unordered_map<std::string, int32_t> vocab;
  int32_t next_id = 0;
  for (const auto& [tok, id] : o.vocab) {
    vocab.emplace(tok, id);
    next_id = std::max(next_id, id + 1);
  }
  std::set<std::string> have;
  for (const auto& t : o.added_tokens) {
    have.insert(t.content);
    next_id = std::max(next_id, t.id + 1);
  }
  std::vector<AddedToken> named = c.extra;
  for (const auto* t : {&c.bos, &c.eos, &c.unk, &c.pad}) {
    if (t->token) named.push_back(*t->token);
  }
  // Tokens with their ids (added_tokens_decoder) first: the others may only take ids after them.
  std::stable_partition(named.begin(), named.end(), [](const AddedToken& t) { return t.id >= 0; });
  for (const auto& t : named) next_id = std::max(next_id, t.id + 1);
  for (AddedToken t : named) {
    if (have.count(t.content)) continue;
    if (auto it = vocab.find(t.content); it != vocab.end()) {
      t.id = it->second;
    } else if (t.id < 0) {
      t.id = next_id++;
    }
    have.insert(t.content);
    o.added_tokens.push_back(t);
  }
}

// The id of `token` among the vocabulary and the added tokens, or -1.
int32_t id_in(const BPEOptions& o, const std::string& token) {
  for (const auto& t : o.added_tokens) {
    if (t.content == token) return t.id;
  }
  for (const auto& [tok, id] : o.vocab) {
    if (tok == token) return id;
  }
  return -1;
}

// bos/eos/pad and the BOS prepended by encode(text, true), from the configs, the tokenizer.json
// template, or OPT's defaults when both are silent: a vocabulary containing </s> is OPT-style
// (bos = eos = </s>, pad = <pad>, and a vocab.json + merges.txt folder prepends the BOS),
// otherwise GPT-2-style (<|endoftext|>, no BOS).
void apply_special_config(const TokenizerConfig& c, Source source, const TokenizerJson* tj,
                          BPEOptions& o) {
  std::set<std::string> vocab;
  for (const auto& [tok, id] : o.vocab) vocab.insert(tok);
  for (const auto& t : o.added_tokens) vocab.insert(t.content);
  const bool opt_style = vocab.count("</s>") > 0;
  const std::string fallback = opt_style                      ? "</s>"
                               : vocab.count("<|endoftext|>") ? "<|endoftext|>"
                                                              : "";
  auto content = [](const NamedToken& t) { return t.token ? t.token->content : std::string(); };
  const std::optional<std::string> template_bos = tj ? tj->template_first_token : std::nullopt;
  o.bos_token = c.bos.set ? content(c.bos) : template_bos ? *template_bos : fallback;
  o.eos_token = c.eos.set ? content(c.eos) : c.present ? "" : fallback;
  o.pad_token = c.pad.set                           ? content(c.pad)
                : c.present                         ? ""
                : opt_style && vocab.count("<pad>") ? "<pad>"
                                                    : "";
  // add_bos_token in tokenizer_config.json decides; without it the tokenizer.json template does
  // (none: no BOS, as HF); a vocab.json + merges.txt folder gets the OPT default, a converted
  // tokenizer.model none (transformers' default). (transformers 5 ignores add_bos_token when a
  // tokenizer.json exists; lethe follows the file, which is what OPT users have always got.)
  const bool has_template = tj && tj->has_template;
  if (c.add_bos || !has_template) {
    const bool add = c.add_bos ? *c.add_bos : source == Source::vocab_merges && opt_style;
    const int32_t bos = o.bos_token.empty() ? -1 : id_in(o, o.bos_token);
    o.prefix_ids.clear();
    if (add && bos >= 0) o.prefix_ids.push_back(bos);
  }
  // Without a tokenizer.json, transformers builds the template from add_eos_token too.
  if (source != Source::tokenizer_json && c.add_eos.value_or(false)) {
    const int32_t eos = o.eos_token.empty() ? -1 : id_in(o, o.eos_token);
    if (eos >= 0) o.suffix_ids.assign(1, eos);
  }
}

// transformers 5 rebuilds the pipeline of model-specific tokenizer classes in Python and takes
// only vocab, merges, added tokens and the post-processor from tokenizer.json. These are the
// classes lethe reproduces (their __init__ in transformers 5.25); any other class, or none, gets
// the file as written.
void apply_transformers_class(const TokenizerConfig& c, Source source, BPEOptions& o) {
  using DK = DecoderStep::Kind;
  const std::string& cls = c.tokenizer_class;
  auto byte_level_model = [&](std::vector<PreTokenizerStep> pre) {
    o.normalizer.clear();
    o.pre_tokenizer = std::move(pre);
    o.decoder = {DecoderStep::of(DK::byte_level)};
    o.unk_token.clear();
    o.byte_fallback = o.fuse_unk = o.ignore_merges = false;
  };
  if (cls == "GPT2Tokenizer" || (source == Source::vocab_merges && cls != "Qwen2Tokenizer")) {
    // GPT2Tokenizer (OPT's class; also what a vocab.json + merges.txt folder is read as).
    byte_level_model({PreTokenizerStep::byte_level(c.add_prefix_space.value_or(false), true)});
  } else if (cls == "Qwen2Tokenizer") {
    byte_level_model({PreTokenizerStep::split_by(std::string(kQwen2Pattern),
                                                 "transformers' Qwen2Tokenizer pattern"),
                      PreTokenizerStep::byte_level(c.add_prefix_space.value_or(false), false)});
    o.normalizer = {NormalizerStep::unicode(NormalizerStep::Kind::nfc)};
  } else if (cls == "LlamaTokenizer") {
    using Prepend = PreTokenizerStep::Prepend;
    const bool add_prefix_space = c.add_prefix_space.value_or(true);
    const Prepend prepend = !add_prefix_space          ? Prepend::never
                            : c.legacy.value_or(false) ? Prepend::always
                                                       : Prepend::first;
    o.normalizer.clear();
    o.pre_tokenizer = {PreTokenizerStep::metaspace(kMetaspace, prepend, false)};
    o.decoder = {DecoderStep::replace(kMetaspace, " "), DecoderStep::of(DK::byte_fallback),
                 DecoderStep::of(DK::fuse)};
    if (add_prefix_space) o.decoder.push_back(DecoderStep::strip(" ", 1, 0));
    o.unk_token.clear();
    o.byte_fallback = o.fuse_unk = true;
    o.ignore_merges = false;
  }
}

BPEOptions vocab_merges_options(const fs::path& dir) {
  const fs::path vocab_path = dir / "vocab.json", merges_path = dir / "merges.txt";
  LETHE_CHECK(present(vocab_path), vocab_path.string(),
              ": missing (merges.txt needs a vocab.json beside it)");
  LETHE_CHECK(present(merges_path), merges_path.string(),
              ": missing (vocab.json needs a merges.txt beside it)");
  BPEOptions o;
  o.source = vocab_path.string();
  const json vocab = read_json(vocab_path);
  LETHE_CHECK(vocab.is_object(), vocab_path.string(), ": expected an object {token: id}");
  o.vocab.reserve(vocab.size());
  for (const auto& [tok, id] : vocab.items()) {
    LETHE_CHECK(id.is_number_integer(), vocab_path.string(), ": token '", tok,
                "' has a non-integer id ", id.dump());
    const int64_t v = id.get<int64_t>();
    LETHE_CHECK(v >= 0 && v < (1 << 24), vocab_path.string(), ": token '", tok, "' has id ", v,
                " (ids must be in [0, 16777216))");
    o.vocab.emplace_back(tok, static_cast<int32_t>(v));
  }

  const std::string text = read_file(merges_path);
  std::vector<size_t> line_of_rank;
  size_t line_no = 0, pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line_no == 1 && line.rfind("#version", 0) == 0) continue;
    if (line.empty() && pos >= text.size()) continue;  // trailing newline
    const size_t space = line.find(' ');
    LETHE_CHECK(space != std::string::npos && space > 0 && space + 1 < line.size() &&
                    line.find(' ', space + 1) == std::string::npos,
                merges_path.string(), " line ", line_no,
                ": expected two tokens separated by one space, got '", line, "'");
    o.merges.emplace_back(line.substr(0, space), line.substr(space + 1));
    line_of_rank.push_back(line_no);
  }
  o.describe_merge = [path = merges_path.string(), lines = std::move(line_of_rank)](size_t rank) {
    return path + " line " + std::to_string(lines.at(rank));
  };
  return o;
}

}  // namespace

std::optional<BPEOptions> bpe_options(const std::string& dir) {
  const fs::path d(dir);
  io::require_directory(dir, "tokenizer directory");
  const fs::path tj_path = d / "tokenizer.json", spm_path = d / "tokenizer.model";
  TokenizerConfig c = read_tokenizer_config(d);
  std::optional<TokenizerJson> tj;
  BPEOptions o;
  Source source;
  if (present(tj_path)) {
    const json j = read_json(tj_path);
    // A tokenizer.json of another model type (Unigram, WordPiece) with a SentencePiece
    // tokenizer.model beside it: the SentencePiece model is used instead.
    if (tokenizer_json_model_type(j) != "BPE" && present(spm_path)) return std::nullopt;
    tj = parse_tokenizer_json(tj_path.string(), j);
    o = std::move(tj->options);
    source = Source::tokenizer_json;
  } else if (present(d / "vocab.json") || present(d / "merges.txt")) {
    o = vocab_merges_options(d);
    source = Source::vocab_merges;
  } else if (present(spm_path) && c.tokenizer_class == "LlamaTokenizer") {
    // transformers converts tokenizer.model to a BPE for a LlamaTokenizer (and runs that, not
    // SentencePiece): so does lethe.
    o = sentencepiece_bpe_options(read_sentencepiece_pieces(read_file(spm_path), spm_path.string()),
                                  spm_path.string());
    source = Source::sentencepiece;
  } else {
    return std::nullopt;
  }
  // AutoTokenizer loads a LlamaTokenizer folder whose tokenizer.json is byte-level (Llama-3's
  // derivatives) as PreTrainedTokenizerFast: the file as written, no class defaults.
  if (c.tokenizer_class == "LlamaTokenizer" && tj && tj->mentions_byte_level) {
    c.tokenizer_class.clear();
  }
  apply_class_defaults(c);
  if (source == Source::vocab_merges && !c.present) {
    // vocab.json + merges.txt without configs: the specials of the vocabulary's family are added
    // tokens.
    TokenizerConfig dflt;
    std::set<std::string> have;
    for (const auto& [tok, id] : o.vocab) have.insert(tok);
    for (const char* t : have.count("</s>") ? std::vector<const char*>{"</s>", "<pad>"}
                                            : std::vector<const char*>{"<|endoftext|>"}) {
      if (have.count(t)) dflt.extra.push_back(AddedToken{t});
    }
    merge_config_tokens(dflt, o);
  } else {
    merge_config_tokens(c, o);
  }
  const TokenizerJson* parsed = tj ? &*tj : nullptr;
  apply_transformers_class(c, source, o);
  apply_special_config(c, source, parsed, o);
  return o;
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& dir) {
  if (auto options = bpe_options(dir)) {
    return std::make_unique<BPETokenizer>(std::move(*options));
  }
  const fs::path spm = fs::path(dir) / "tokenizer.model";
  LETHE_CHECK(present(spm), dir,
              ": no tokenizer files (expected tokenizer.json, vocab.json + merges.txt, or "
              "tokenizer.model)");
  return std::make_unique<SentencePieceTokenizer>(
      spm.string(), read_tokenizer_config(fs::path(dir)).add_bos.value_or(true));
}

}  // namespace lethe::tokenizer
