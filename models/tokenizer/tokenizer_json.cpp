#include "models/tokenizer/tokenizer_json.h"

#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "models/tokenizer/regex.h"

namespace lethe::tokenizer {
namespace {

using nlohmann::json;

// A position in the file for messages: "tokenizer.json: pre_tokenizer.pretokenizers[0]".
struct Where {
  std::string file, path;
  Where operator/(const std::string& key) const {
    return {file, path.empty() ? key : path + "." + key};
  }
  Where operator[](size_t i) const { return {file, path + "[" + std::to_string(i) + "]"}; }
  std::string str() const { return path.empty() ? file : file + ": " + path; }
};

const json& object_at(const json& v, const Where& at) {
  LETHE_CHECK(v.is_object(), at.str(), " must be an object, got ", v.dump());
  return v;
}

bool bool_at(const json& obj, const char* key, const Where& at, bool fallback) {
  if (!obj.contains(key) || obj[key].is_null()) return fallback;
  LETHE_CHECK(obj[key].is_boolean(), (at / key).str(), " must be true or false, got ",
              obj[key].dump());
  return obj[key].get<bool>();
}

std::string string_at(const json& obj, const char* key, const Where& at) {
  LETHE_CHECK(obj.contains(key) && obj[key].is_string(), (at / key).str(),
              " must be a string, got ", obj.contains(key) ? obj[key].dump() : "nothing");
  return obj[key].get<std::string>();
}

// A field that must be one Unicode character (Metaspace's replacement, Strip's content).
std::string char_at(const json& obj, const char* key, const Where& at) {
  std::string s = string_at(obj, key, at);
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  LETHE_CHECK(n == 1, (at / key).str(), " must be one character, got '", s, "'");
  return s;
}

const json& array_at(const json& obj, const char* key, const Where& at) {
  LETHE_CHECK(obj.contains(key) && obj[key].is_array(), (at / key).str(), " must be an array, got ",
              obj.contains(key) ? obj[key].dump() : "nothing");
  return obj[key];
}

std::string type_of(const json& v, const Where& at) {
  object_at(v, at);
  return string_at(v, "type", at);
}

[[noreturn]] void unsupported(const Where& at, const std::string& type, const char* supported) {
  LETHE_FAIL(at.str(), ".type '", type, "' is not supported (supported: ", supported, ")");
}

// A {"String": s} or {"Regex": r} pattern, as a literal (regex_ok = false) or a pattern.
std::string pattern_at(const json& obj, const Where& at, bool regex_ok) {
  const Where p = at / "pattern";
  LETHE_CHECK(obj.contains("pattern") && obj["pattern"].is_object() && obj["pattern"].size() == 1,
              p.str(), " must be {\"String\": ...} or {\"Regex\": ...}, got ",
              obj.contains("pattern") ? obj["pattern"].dump() : "nothing");
  const json& v = obj["pattern"];
  if (v.contains("String") && v["String"].is_string()) {
    const std::string s = v["String"].get<std::string>();
    LETHE_CHECK(!s.empty(), (p / "String").str(), " must not be empty");
    return regex_ok ? escape_literal(s) : s;
  }
  LETHE_CHECK(v.contains("Regex") && v["Regex"].is_string(), p.str(),
              " must be {\"String\": ...} or {\"Regex\": ...}, got ", v.dump());
  LETHE_CHECK(regex_ok, (p / "Regex").str(),
              ": regular-expression patterns are not supported here (only {\"String\": ...})");
  return v["Regex"].get<std::string>();
}

// Metaspace's prepend_scheme, with the older add_prefix_space field as HF reads it.
PreTokenizerStep::Prepend prepend_scheme_at(const json& obj, const Where& at) {
  using P = PreTokenizerStep::Prepend;
  P scheme = P::always;
  if (obj.contains("prepend_scheme") && !obj["prepend_scheme"].is_null()) {
    const std::string s = string_at(obj, "prepend_scheme", at);
    if (s == "always") {
      scheme = P::always;
    } else if (s == "first") {
      scheme = P::first;
    } else if (s == "never") {
      scheme = P::never;
    } else {
      LETHE_FAIL((at / "prepend_scheme").str(),
                 " must be \"always\", \"first\" or \"never\", got '", s, "'");
    }
  }
  if (!bool_at(obj, "add_prefix_space", at, true)) {
    LETHE_CHECK(scheme == P::never || !obj.contains("prepend_scheme"),
                (at / "add_prefix_space").str(), ": false contradicts prepend_scheme");
    scheme = P::never;
  }
  return scheme;
}

void parse_normalizer(const json& v, const Where& at, std::vector<NormalizerStep>& out) {
  using K = NormalizerStep::Kind;
  const std::string type = type_of(v, at);
  if (type == "Sequence") {
    const json& list = array_at(v, "normalizers", at);
    for (size_t i = 0; i < list.size(); ++i)
      parse_normalizer(list[i], (at / "normalizers")[i], out);
  } else if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
    out.push_back(NormalizerStep::unicode(type == "NFC"    ? K::nfc
                                          : type == "NFD"  ? K::nfd
                                          : type == "NFKC" ? K::nfkc
                                                           : K::nfkd));
  } else if (type == "Prepend") {
    out.push_back(NormalizerStep::prepend(string_at(v, "prepend", at)));
  } else if (type == "Replace") {
    out.push_back(NormalizerStep::replace(pattern_at(v, at, false), string_at(v, "content", at)));
  } else {
    unsupported(at, type, "NFC, NFD, NFKC, NFKD, Prepend, Replace with a String pattern, Sequence");
  }
}

void parse_pre_tokenizer(const json& v, const Where& at, std::vector<PreTokenizerStep>& out) {
  const std::string type = type_of(v, at);
  if (type == "Sequence") {
    const json& list = array_at(v, "pretokenizers", at);
    for (size_t i = 0; i < list.size(); ++i) {
      parse_pre_tokenizer(list[i], (at / "pretokenizers")[i], out);
    }
  } else if (type == "Split") {
    PreTokenizerStep s =
        PreTokenizerStep::split_by(pattern_at(v, at, true), (at / "pattern").str());
    const std::string behavior = string_at(v, "behavior", at);
    LETHE_CHECK(behavior == "Isolated", (at / "behavior").str(), " '", behavior,
                "' is not supported (only \"Isolated\")");
    LETHE_CHECK(!bool_at(v, "invert", at, false), (at / "invert").str(),
                ": true is not supported (only false)");
    out.push_back(std::move(s));
  } else if (type == "ByteLevel") {
    out.push_back(PreTokenizerStep::byte_level(bool_at(v, "add_prefix_space", at, false),
                                               bool_at(v, "use_regex", at, true)));
  } else if (type == "Metaspace") {
    out.push_back(PreTokenizerStep::metaspace(
        char_at(v, "replacement", at), prepend_scheme_at(v, at), bool_at(v, "split", at, true)));
  } else {
    unsupported(at, type, "Split, ByteLevel, Metaspace, Sequence");
  }
}

void parse_decoder(const json& v, const Where& at, std::vector<DecoderStep>& out) {
  using K = DecoderStep::Kind;
  const std::string type = type_of(v, at);
  if (type == "Sequence") {
    const json& list = array_at(v, "decoders", at);
    for (size_t i = 0; i < list.size(); ++i) parse_decoder(list[i], (at / "decoders")[i], out);
  } else if (type == "ByteLevel") {
    out.push_back(DecoderStep::of(K::byte_level));
  } else if (type == "Replace") {
    out.push_back(DecoderStep::replace(pattern_at(v, at, false), string_at(v, "content", at)));
  } else if (type == "ByteFallback") {
    out.push_back(DecoderStep::of(K::byte_fallback));
  } else if (type == "Fuse") {
    out.push_back(DecoderStep::of(K::fuse));
  } else if (type == "Strip") {
    for (const char* key : {"start", "stop"}) {
      LETHE_CHECK(v.contains(key) && v[key].is_number_unsigned(), (at / key).str(),
                  " must be a non-negative integer");
    }
    out.push_back(DecoderStep::strip(char_at(v, "content", at), v["start"].get<size_t>(),
                                     v["stop"].get<size_t>()));
  } else if (type == "Metaspace") {
    out.push_back(
        DecoderStep::metaspace(char_at(v, "replacement", at),
                               prepend_scheme_at(v, at) == PreTokenizerStep::Prepend::never));
  } else {
    unsupported(at, type,
                "ByteLevel, Replace with a String pattern, ByteFallback, Fuse, Strip, "
                "Metaspace, Sequence");
  }
}

// The single-sequence template: special tokens before $A are the prefix, after it the suffix.
void parse_post_processor(const json& v, const Where& at, TokenizerJson& out) {
  const std::string type = type_of(v, at);
  if (type == "Sequence") {
    const json& list = array_at(v, "processors", at);
    for (size_t i = 0; i < list.size(); ++i) {
      parse_post_processor(list[i], (at / "processors")[i], out);
    }
  } else if (type == "ByteLevel") {
    // Only adjusts offsets; the ids are unchanged.
  } else if (type == "TemplateProcessing") {
    const json& single = array_at(v, "single", at);
    const json& specials = v.contains("special_tokens") ? v["special_tokens"] : json::object();
    bool seen_sequence = false;
    for (size_t i = 0; i < single.size(); ++i) {
      const Where item = (at / "single")[i];
      const json& piece = object_at(single[i], item);
      if (piece.contains("Sequence")) {
        LETHE_CHECK(!seen_sequence, item.str(), ": a single-sequence template has one $A");
        seen_sequence = true;
        continue;
      }
      LETHE_CHECK(piece.contains("SpecialToken") && piece["SpecialToken"].is_object(), item.str(),
                  " must be {\"SpecialToken\": ...} or {\"Sequence\": ...}, got ", piece.dump());
      const std::string name = string_at(piece["SpecialToken"], "id", item / "SpecialToken");
      const Where entry = at / "special_tokens" / name;
      LETHE_CHECK(specials.is_object() && specials.contains(name) && specials[name].is_object(),
                  entry.str(), " is missing (the template uses '", name, "')");
      const json& ids = array_at(specials[name], "ids", entry);
      for (const auto& id : ids) {
        LETHE_CHECK(id.is_number_unsigned() && id.get<uint64_t>() < (1u << 24),
                    (entry / "ids").str(), " must hold ids in [0, 16777216), got ", id.dump());
        (seen_sequence ? out.options.suffix_ids : out.options.prefix_ids)
            .push_back(id.get<int32_t>());
      }
      if (!seen_sequence && !out.template_first_token) out.template_first_token = name;
    }
    LETHE_CHECK(seen_sequence, (at / "single").str(), " has no {\"Sequence\": {\"id\": \"A\"}}");
    out.has_template = true;
  } else {
    unsupported(at, type, "TemplateProcessing, ByteLevel, Sequence");
  }
}

bool mentions_byte_level(const json& v) {
  if (v.is_string()) return v.get_ref<const std::string&>() == "ByteLevel";
  if (v.is_object() || v.is_array()) {
    for (const auto& x : v) {
      if (mentions_byte_level(x)) return true;
    }
  }
  return false;
}

}  // namespace

std::string tokenizer_json_model_type(const json& j) {
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object()) return "BPE";
  const json& m = j["model"];
  return m.contains("type") && m["type"].is_string() ? m["type"].get<std::string>() : "BPE";
}

TokenizerJson parse_tokenizer_json(const std::string& path, const json& j) {
  const Where top{path, ""};
  LETHE_CHECK(j.is_object(), path, ": expected a JSON object");
  LETHE_CHECK(j.contains("model") && j["model"].is_object(), path, ": no 'model' object");
  TokenizerJson out;
  BPEOptions& o = out.options;
  o.source = path;

  // The model.
  const Where mw = top / "model";
  const json& m = j["model"];
  const std::string type = tokenizer_json_model_type(j);
  LETHE_CHECK(type == "BPE", (mw / "type").str(), " '", type,
              "' is not supported (BPE only; SentencePiece models via tokenizer.model)");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    LETHE_CHECK(!m.contains(key) || m[key].is_null() || m[key] == "", (mw / key).str(),
                " is not supported (only null or \"\")");
  }
  LETHE_CHECK(!m.contains("dropout") || m["dropout"].is_null() ||
                  (m["dropout"].is_number() && m["dropout"].get<double>() == 0.0),
              (mw / "dropout").str(), " is not supported (only null)");
  o.ignore_merges = bool_at(m, "ignore_merges", mw, false);
  o.byte_fallback = bool_at(m, "byte_fallback", mw, false);
  o.fuse_unk = bool_at(m, "fuse_unk", mw, false);
  if (m.contains("unk_token") && !m["unk_token"].is_null())
    o.unk_token = string_at(m, "unk_token", mw);

  LETHE_CHECK(m.contains("vocab") && m["vocab"].is_object(), (mw / "vocab").str(),
              " must be an object {token: id}");
  o.vocab.reserve(m["vocab"].size());
  for (const auto& [tok, id] : m["vocab"].items()) {
    LETHE_CHECK(id.is_number_integer(), (mw / "vocab").str(), " token '", tok,
                "' has a non-integer id ", id.dump());
    const int64_t v = id.get<int64_t>();
    LETHE_CHECK(v >= 0 && v < (1 << 24), (mw / "vocab").str(), " token '", tok, "' has id ", v,
                " (ids must be in [0, 16777216))");
    o.vocab.emplace_back(tok, static_cast<int32_t>(v));
  }
  const json& merges = array_at(m, "merges", mw);
  o.merges.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& e = merges[i];
    const std::string at = (mw / "merges")[i].str();
    if (e.is_string()) {  // "a b" (older tokenizers)
      const std::string s = e.get<std::string>();
      const size_t space = s.find(' ');
      LETHE_CHECK(space != std::string::npos && s.find(' ', space + 1) == std::string::npos &&
                      space > 0 && space + 1 < s.size(),
                  at, " = '", s, "' is not two tokens and one space");
      o.merges.emplace_back(s.substr(0, space), s.substr(space + 1));
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      o.merges.emplace_back(e[0].get<std::string>(), e[1].get<std::string>());
    } else {
      LETHE_FAIL(at, " must be \"a b\" or [\"a\", \"b\"], got ", e.dump());
    }
  }
  o.describe_merge = [where = (mw / "merges").str()](size_t rank) {
    return where + "[" + std::to_string(rank) + "]";
  };

  // Added tokens.
  if (j.contains("added_tokens") && !j["added_tokens"].is_null()) {
    const json& list = array_at(j, "added_tokens", top);
    for (size_t i = 0; i < list.size(); ++i) {
      const Where at = (top / "added_tokens")[i];
      const json& e = list[i];
      LETHE_CHECK(e.is_object() && e.contains("content") && e["content"].is_string() &&
                      e.contains("id") && e["id"].is_number_integer(),
                  at.str(), ": needs a string 'content' and an integer 'id'");
      AddedToken t;
      t.content = e["content"].get<std::string>();
      const int64_t id = e["id"].get<int64_t>();
      LETHE_CHECK(id >= 0 && id < (1 << 24), at.str(), ": id ", id, " out of range");
      LETHE_CHECK(!t.content.empty(), at.str(), ": empty content");
      t.id = static_cast<int32_t>(id);
      t.special = bool_at(e, "special", at, false);
      t.lstrip = bool_at(e, "lstrip", at, false);
      t.rstrip = bool_at(e, "rstrip", at, false);
      t.normalized = bool_at(e, "normalized", at, true);  // HF's default for a missing field
      LETHE_CHECK(!bool_at(e, "single_word", at, false), (at / "single_word").str(),
                  ": true is not supported");
      o.added_tokens.push_back(std::move(t));
    }
  }

  // The pipeline. A missing or null component is absent (no normalizer, no decoder: HF joins
  // the tokens with spaces).
  auto component = [&](const char* key) -> const json* {
    return j.contains(key) && !j[key].is_null() ? &j[key] : nullptr;
  };
  o.normalizer.clear();
  o.pre_tokenizer.clear();
  o.decoder.clear();
  if (const json* v = component("normalizer"))
    parse_normalizer(*v, top / "normalizer", o.normalizer);
  if (const json* v = component("pre_tokenizer")) {
    parse_pre_tokenizer(*v, top / "pre_tokenizer", o.pre_tokenizer);
  }
  if (const json* v = component("decoder")) parse_decoder(*v, top / "decoder", o.decoder);
  if (const json* v = component("post_processor")) {
    parse_post_processor(*v, top / "post_processor", out);
  }
  for (const char* key : {"normalizer", "pre_tokenizer", "post_processor", "decoder"}) {
    if (const json* v = component(key)) out.mentions_byte_level |= mentions_byte_level(*v);
  }
  return out;
}

}  // namespace lethe::tokenizer
