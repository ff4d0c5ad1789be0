// Normalizer: HF tokenizers' text normalizers that tokenizer.json files of the supported families
// use (Unicode NFC / NFD / NFKC / NFKD, Prepend, Replace with a literal), applied in sequence.
// Parsing them from JSON is tokenizer_json.cpp's job.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lethe::tokenizer {

struct NormalizerStep {
  enum class Kind { nfc, nfd, nfkc, nfkd, prepend, replace };
  Kind kind = Kind::nfc;
  std::string text;         // prepend: what is prepended; replace: the literal replaced
  std::string replacement;  // replace: what replaces it

  static NormalizerStep unicode(Kind form) { return {form, {}, {}}; }
  static NormalizerStep prepend(std::string text) { return {Kind::prepend, std::move(text), {}}; }
  static NormalizerStep replace(std::string from, std::string to) {
    return {Kind::replace, std::move(from), std::move(to)};
  }
};

class Normalizer {
 public:
  explicit Normalizer(std::vector<NormalizerStep> steps = {});

  bool empty() const { return steps_.empty(); }

  // `text` (valid UTF-8) normalised by every step in order. Prepend leaves empty text empty, as HF
  // does; Unicode normalisation uses utf8proc's tables (Unicode 15 in Debian 12's libutf8proc).
  std::string apply(std::string_view text) const;

 private:
  std::vector<NormalizerStep> steps_;
};

}  // namespace lethe::tokenizer
