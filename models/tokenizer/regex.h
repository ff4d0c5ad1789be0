// Regex: a HuggingFace tokenizers split pattern (Oniguruma syntax) run by PCRE2, cutting text into
// "Isolated" pieces. Knows nothing about tokens; the pre-tokenizers (pre_tokenizer.h) use it.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "models/tokenizer/function_ref.h"

namespace lethe::tokenizer {

// GPT-2's pre-tokenising pattern (HF's ByteLevel pre-tokenizer with use_regex), in Oniguruma form.
inline constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// The PCRE2 spelling of an Oniguruma pattern as HF tokenizers runs it. Oniguruma's \s is the
// Unicode White_Space property; PCRE2's \s under UCP also matches U+180E. So \s becomes that
// class spelled out (inside and outside brackets) and \S outside brackets its complement; a \S
// inside brackets keeps PCRE2's meaning. Everything else is passed through: the patterns
// tokenizer.json files use (\p{L}, \p{N}, (?i:...), lookahead, {m,n}) mean the same in both.
std::string pcre2_pattern(std::string_view oniguruma_pattern);

// PCRE2 pattern matching `literal` exactly (Split's {"String": ...} form).
std::string escape_literal(std::string_view literal);

class Regex {
 public:
  // Compiles pcre2_pattern(oniguruma_pattern) (UTF + UCP, JIT-compiled when available). Errors
  // (lethe::Error) start with `where`, e.g. "tokenizer.json: pre_tokenizer.pattern.Regex".
  Regex(std::string_view oniguruma_pattern, const std::string& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Calls piece(begin, end) for consecutive byte ranges covering all of s (valid UTF-8): every
  // match and every unmatched gap between matches, in order (HF's "Isolated" behaviour).
  // Thread-safe (match data and JIT stack are per thread).
  void split(std::string_view s, FunctionRef<void(size_t, size_t)> piece) const;

 private:
  struct Compiled;
  std::unique_ptr<Compiled> compiled_;
};

}  // namespace lethe::tokenizer
