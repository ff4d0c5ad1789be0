// PreTokenizer: HF tokenizers' pre-tokenizers that the supported families use (Split by a regex,
// ByteLevel, Metaspace), run in sequence to cut normalised text into the words BPE merges within.
// Parsing them from JSON is tokenizer_json.cpp's job; the byte-to-symbol mapping of ByteLevel is
// the model's (bpe.cpp).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "models/tokenizer/function_ref.h"

namespace lethe::tokenizer {

class Regex;

struct PreTokenizerStep {
  enum class Kind { split, byte_level, metaspace };
  enum class Prepend { always, first, never };  // Metaspace's prepend_scheme
  Kind kind = Kind::split;
  std::string pattern;            // split: Oniguruma pattern; behaviour "Isolated", not inverted
  std::string where;              // split: names the pattern in errors ("tokenizer.json: ...")
  bool add_prefix_space = false;  // byte_level: prepend ' ' to a piece not starting with one
  bool use_regex = true;          // byte_level: also split by GPT-2's pattern
  std::string replacement = "\xe2\x96\x81";  // metaspace: "▁" replaces ' '
  Prepend prepend = Prepend::always;         // metaspace: when to prepend the replacement
  bool split = true;                         // metaspace: cut before every replacement character

  static PreTokenizerStep split_by(std::string pattern, std::string where) {
    PreTokenizerStep s;
    s.kind = Kind::split;
    s.pattern = std::move(pattern);
    s.where = std::move(where);
    return s;
  }
  static PreTokenizerStep byte_level(bool add_prefix_space, bool use_regex) {
    PreTokenizerStep s;
    s.kind = Kind::byte_level;
    s.add_prefix_space = add_prefix_space;
    s.use_regex = use_regex;
    return s;
  }
  static PreTokenizerStep metaspace(std::string replacement, Prepend prepend, bool split) {
    PreTokenizerStep s;
    s.kind = Kind::metaspace;
    s.replacement = std::move(replacement);
    s.prepend = prepend;
    s.split = split;
    return s;
  }
};

class PreTokenizer {
 public:
  explicit PreTokenizer(std::vector<PreTokenizerStep> steps = {});
  ~PreTokenizer();
  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;

  // Calls emit(word) for each non-empty pre-token of `text` (valid UTF-8), in order. at_start:
  // text begins at offset 0 of the input (Metaspace's prepend_scheme "first" prepends only then).
  // Thread-safe.
  void run(std::string_view text, bool at_start, FunctionRef<void(std::string_view)> emit) const;

 private:
  void run_from(size_t step, std::string_view text, bool at_start,
                FunctionRef<void(std::string_view)> emit) const;

  std::vector<PreTokenizerStep> steps_;
  std::vector<std::unique_ptr<Regex>> regexes_;  // one per step; null for steps without a regex
  // passthrough_[i]: steps i.. leave a piece as it is (a ByteLevel without prefix space or regex,
  // or none), so a piece reaching step i is emitted directly.
  std::vector<bool> passthrough_;
};

}  // namespace lethe::tokenizer
