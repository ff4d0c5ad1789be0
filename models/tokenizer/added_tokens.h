// Added tokens (HF "added_tokens"): strings matched literally in the text before the model sees
// it, and the matcher that finds them. No vocabulary or model logic here.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "models/tokenizer/function_ref.h"

namespace lethe::tokenizer {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = true;      // dropped by decode(skip_special = true)
  bool lstrip = false;      // the match swallows Unicode whitespace on its left
  bool rstrip = false;      // ... and on its right
  bool normalized = false;  // matched in the normalised text, not in the raw text (HF semantics)
};

// Finds added tokens leftmost-longest (what HF's Aho-Corasick matcher does), widening a match by
// lstrip / rstrip, and cuts the text into the pieces between matches.
class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  // Each token is matched by `patterns[i]` (its content, or its normalised content).
  AddedTokenMatcher(const std::vector<AddedToken>& tokens,
                    const std::vector<std::string>& patterns);

  bool empty() const { return by_pattern_.empty(); }

  // In text order: segment(begin, end) for each non-empty stretch between matches and token(id)
  // for each match.
  void split(std::string_view text, FunctionRef<void(size_t, size_t)> segment,
             FunctionRef<void(int32_t)> token) const;

 private:
  struct Entry {
    int32_t id;
    bool lstrip, rstrip;
  };
  // The longest token starting at text[at], or nullptr.
  const Entry* match_at(std::string_view text, size_t at, size_t& length) const;

  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, Entry, Hash, std::equal_to<>> by_pattern_;
  std::vector<size_t> lengths_;  // distinct pattern lengths, longest first
  bool first_byte_[256] = {};    // some pattern starts with this byte
};

}  // namespace lethe::tokenizer
