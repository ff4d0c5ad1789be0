// load_tokenizer: finds and parses HuggingFace / SentencePiece tokenizer files in a directory.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "engine/error.h"
#include "engine/io/file_util.h"
#include "engine/io/json.h"
#include "models/tokenizer/bpe.h"
#include "models/tokenizer/sentencepiece.h"
#include "models/tokenizer/tokenizer.h"

namespace lethe::tokenizer {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

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
  } else {
    LETHE_FAIL(where, ": expected a token string or {\"content\": ...}, got ", v.dump());
  }
  if (t.content.empty()) return std::nullopt;
  return t;
}

bool bool_field(const json& obj, const char* key, const std::string& where, bool fallback) {
  if (!obj.contains(key) || obj[key].is_null()) return fallback;
  LETHE_CHECK(obj[key].is_boolean(), where, ": field '", key, "' must be true or false");
  return obj[key].get<bool>();
}

// What tokenizer_config.json and special_tokens_map.json say (both optional).
struct SpecialConfig {
  bool present = false;
  std::optional<bool> add_bos, add_prefix_space;
  std::optional<AddedToken> bos, eos, unk, pad;
  std::vector<AddedToken> extra;  // additional_special_tokens, added_tokens_decoder
};

void read_special_fields(const json& j, const std::string& where, SpecialConfig& c) {
  LETHE_CHECK(j.is_object(), where, ": expected a JSON object");
  auto field = [&](const char* key, std::optional<AddedToken>& slot) {
    if (!slot && j.contains(key)) slot = token_field(j[key], where + ": " + key);
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

SpecialConfig read_special_config(const fs::path& dir) {
  SpecialConfig c;
  const fs::path config = dir / "tokenizer_config.json";
  if (present(config)) {
    c.present = true;
    const json j = read_json(config);
    const std::string where = config.string();
    read_special_fields(j, where, c);
    if (j.contains("add_bos_token")) c.add_bos = bool_field(j, "add_bos_token", where, true);
    if (j.contains("add_prefix_space")) {
      c.add_prefix_space = bool_field(j, "add_prefix_space", where, false);
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
          LETHE_CHECK(used == key.size(), "");
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

// Adds to `added` every token the configs name that is not there yet; ids come from the vocab,
// from added_tokens_decoder, or are appended after the largest id (as transformers does).
void merge_config_tokens(const SpecialConfig& c, const ByteLevelBPEOptions& o,
                         std::vector<AddedToken>& added) {
  std::unordered_map<std::string, int32_t> vocab;
  int32_t next_id = 0;
  for (const auto& [tok, id] : o.vocab) {
    vocab.emplace(tok, id);
    next_id = std::max(next_id, id + 1);
  }
  std::set<std::string> have;
  for (const auto& t : added) {
    have.insert(t.content);
    next_id = std::max(next_id, t.id + 1);
  }
  std::vector<AddedToken> named = c.extra;
  for (const auto* t : {&c.bos, &c.eos, &c.unk, &c.pad}) {
    if (*t) named.push_back(**t);
  }
  for (AddedToken t : named) {
    if (have.count(t.content)) continue;
    if (auto it = vocab.find(t.content); it != vocab.end()) {
      t.id = it->second;
    } else if (t.id < 0) {
      t.id = next_id++;
    }
    have.insert(t.content);
    added.push_back(t);
  }
}

// bos/eos/pad/unk and add_bos from the configs, with OPT's defaults when they are silent:
// a vocabulary containing </s> is OPT-style (bos = eos = </s>, pad = <pad>, BOS prepended),
// otherwise GPT-2-style (<|endoftext|>, no BOS).
void apply_special_config(const SpecialConfig& c, std::optional<AddedToken> template_bos,
                          ByteLevelBPEOptions& o) {
  std::set<std::string> vocab;
  for (const auto& [tok, id] : o.vocab) vocab.insert(tok);
  for (const auto& t : o.added_tokens) vocab.insert(t.content);
  const bool opt_style = vocab.count("</s>") > 0;
  const std::string fallback = opt_style                      ? "</s>"
                               : vocab.count("<|endoftext|>") ? "<|endoftext|>"
                                                              : "";
  auto pick = [&](const std::optional<AddedToken>& t, const std::string& dflt) {
    if (t) return t->content;
    return c.present ? std::string() : dflt;
  };
  o.bos_token = c.bos ? c.bos->content : template_bos ? template_bos->content : fallback;
  o.eos_token = pick(c.eos, fallback);
  o.pad_token = pick(c.pad, opt_style && vocab.count("<pad>") ? "<pad>" : "");
  o.add_bos = c.add_bos ? *c.add_bos : template_bos ? true : opt_style;
  if (c.add_prefix_space) o.add_prefix_space = *c.add_prefix_space;
}

ByteLevelBPEOptions vocab_merges_options(const fs::path& dir) {
  const fs::path vocab_path = dir / "vocab.json", merges_path = dir / "merges.txt";
  LETHE_CHECK(present(vocab_path), vocab_path.string(),
              ": missing (merges.txt needs a vocab.json beside it)");
  LETHE_CHECK(present(merges_path), merges_path.string(),
              ": missing (vocab.json needs a merges.txt beside it)");
  ByteLevelBPEOptions o;
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

  const SpecialConfig c = read_special_config(dir);
  if (!c.present) {
    // No configs: treat the specials of the vocabulary's family as added tokens.
    SpecialConfig dflt;
    std::set<std::string> have;
    for (const auto& [tok, id] : o.vocab) have.insert(tok);
    for (const char* t : have.count("</s>") ? std::vector<const char*>{"</s>", "<pad>"}
                                            : std::vector<const char*>{"<|endoftext|>"}) {
      if (have.count(t)) dflt.extra.push_back(AddedToken{t});
    }
    merge_config_tokens(dflt, o, o.added_tokens);
  } else {
    merge_config_tokens(c, o, o.added_tokens);
  }
  apply_special_config(c, std::nullopt, o);
  return o;
}

// True when tokenizer.json describes a byte-level BPE (what ByteLevelBPE implements).
bool is_byte_level_bpe(const json& j) {
  return j.is_object() && j.contains("model") && j["model"].is_object() &&
         j["model"].value("type", std::string("BPE")) == "BPE" && j.contains("pre_tokenizer") &&
         j["pre_tokenizer"].is_object() && j["pre_tokenizer"].value("type", "") == "ByteLevel";
}

ByteLevelBPEOptions tokenizer_json_options(const fs::path& path, const json& j) {
  const std::string where = path.string();
  LETHE_CHECK(j.is_object(), where, ": expected a JSON object");
  LETHE_CHECK(j.contains("model") && j["model"].is_object(), where, ": no 'model' object");
  const json& m = j["model"];
  const std::string type = m.value("type", std::string("BPE"));
  LETHE_CHECK(type == "BPE", where, ": model type '", type,
              "' is not supported (byte-level BPE only; SentencePiece via tokenizer.model)");
  LETHE_CHECK(j.contains("pre_tokenizer") && j["pre_tokenizer"].is_object() &&
                  j["pre_tokenizer"].value("type", "") == "ByteLevel",
              where, ": pre_tokenizer must be ByteLevel (got ",
              j.contains("pre_tokenizer") ? j["pre_tokenizer"].dump() : "none", ")");
  LETHE_CHECK(!j.contains("normalizer") || j["normalizer"].is_null(), where,
              ": normalizers are not supported (got ", j["normalizer"].dump(), ")");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    LETHE_CHECK(!m.contains(key) || m[key].is_null() || m[key] == "", where, ": model.", key,
                " is not supported");
  }
  LETHE_CHECK(!m.contains("dropout") || m["dropout"].is_null(), where,
              ": model.dropout is not supported");

  ByteLevelBPEOptions o;
  o.source = where;
  const json& pre = j["pre_tokenizer"];
  o.add_prefix_space = bool_field(pre, "add_prefix_space", where + ": pre_tokenizer", false);
  o.use_regex = bool_field(pre, "use_regex", where + ": pre_tokenizer", true);
  o.ignore_merges = bool_field(m, "ignore_merges", where + ": model", false);

  LETHE_CHECK(m.contains("vocab") && m["vocab"].is_object(), where,
              ": model.vocab must be an object {token: id}");
  o.vocab.reserve(m["vocab"].size());
  for (const auto& [tok, id] : m["vocab"].items()) {
    LETHE_CHECK(id.is_number_integer(), where, ": model.vocab token '", tok,
                "' has a non-integer id ", id.dump());
    const int64_t v = id.get<int64_t>();
    LETHE_CHECK(v >= 0 && v < (1 << 24), where, ": model.vocab token '", tok, "' has id ", v,
                " (ids must be in [0, 16777216))");
    o.vocab.emplace_back(tok, static_cast<int32_t>(v));
  }
  LETHE_CHECK(m.contains("merges") && m["merges"].is_array(), where,
              ": model.merges must be an array");
  for (size_t i = 0; i < m["merges"].size(); ++i) {
    const json& e = m["merges"][i];
    if (e.is_string()) {  // "a b" (older tokenizers)
      const std::string s = e.get<std::string>();
      const size_t space = s.find(' ');
      LETHE_CHECK(space != std::string::npos && s.find(' ', space + 1) == std::string::npos &&
                      space > 0 && space + 1 < s.size(),
                  where, ": model.merges[", i, "] = '", s, "' is not two tokens and one space");
      o.merges.emplace_back(s.substr(0, space), s.substr(space + 1));
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      o.merges.emplace_back(e[0].get<std::string>(), e[1].get<std::string>());
    } else {
      LETHE_FAIL(where, ": model.merges[", i, "] must be \"a b\" or [\"a\", \"b\"], got ",
                 e.dump());
    }
  }
  o.describe_merge = [where](size_t rank) {
    return where + ": model.merges[" + std::to_string(rank) + "]";
  };
  if (m.contains("unk_token") && m["unk_token"].is_string()) {
    o.unk_token = m["unk_token"].get<std::string>();
  }

  if (j.contains("added_tokens") && !j["added_tokens"].is_null()) {
    LETHE_CHECK(j["added_tokens"].is_array(), where, ": added_tokens must be an array");
    for (size_t i = 0; i < j["added_tokens"].size(); ++i) {
      const json& e = j["added_tokens"][i];
      const std::string at = where + ": added_tokens[" + std::to_string(i) + "]";
      LETHE_CHECK(e.is_object() && e.contains("content") && e["content"].is_string() &&
                      e.contains("id") && e["id"].is_number_integer(),
                  at, ": needs a string 'content' and an integer 'id'");
      AddedToken t;
      t.content = e["content"].get<std::string>();
      const int64_t id = e["id"].get<int64_t>();
      LETHE_CHECK(id >= 0 && id < (1 << 24), at, ": id ", id, " out of range");
      LETHE_CHECK(!t.content.empty(), at, ": empty content");
      t.id = static_cast<int32_t>(id);
      t.special = bool_field(e, "special", at, false);
      t.lstrip = bool_field(e, "lstrip", at, false);
      t.rstrip = bool_field(e, "rstrip", at, false);
      o.added_tokens.push_back(std::move(t));
    }
  }

  // A TemplateProcessing post-processor that starts with a special token prepends it (BOS).
  std::optional<AddedToken> template_bos;
  if (j.contains("post_processor") && j["post_processor"].is_object()) {
    const json& p = j["post_processor"];
    if (p.value("type", "") == "TemplateProcessing" && p.contains("single") &&
        p["single"].is_array() && !p["single"].empty() && p["single"][0].is_object() &&
        p["single"][0].contains("SpecialToken")) {
      const json& st = p["single"][0]["SpecialToken"];
      if (st.contains("id") && st["id"].is_string()) {
        template_bos = AddedToken{st["id"].get<std::string>()};
      }
    }
  }
  const SpecialConfig c = read_special_config(path.parent_path());
  merge_config_tokens(c, o, o.added_tokens);
  apply_special_config(c, template_bos, o);
  return o;
}

}  // namespace

std::optional<ByteLevelBPEOptions> byte_level_bpe_options(const std::string& dir) {
  const fs::path d(dir);
  io::require_directory(dir, "tokenizer directory");
  const fs::path tj = d / "tokenizer.json";
  if (present(tj)) {
    const json j = read_json(tj);
    // A non-byte-level tokenizer.json (e.g. Llama's) with a tokenizer.model beside it: not ours.
    if (!is_byte_level_bpe(j) && present(d / "tokenizer.model")) return std::nullopt;
    return tokenizer_json_options(tj, j);
  }
  if (present(d / "vocab.json") || present(d / "merges.txt")) return vocab_merges_options(d);
  return std::nullopt;
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& dir) {
  if (auto options = byte_level_bpe_options(dir)) {
    return std::make_unique<ByteLevelBPE>(std::move(*options));
  }
  const fs::path spm = fs::path(dir) / "tokenizer.model";
  LETHE_CHECK(present(spm), dir,
              ": no tokenizer files (expected tokenizer.json, vocab.json + merges.txt, or "
              "tokenizer.model)");
  return std::make_unique<SentencePieceTokenizer>(
      spm.string(), read_special_config(fs::path(dir)).add_bos.value_or(true));
}

}  // namespace lethe::tokenizer
