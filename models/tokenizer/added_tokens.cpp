#include "models/tokenizer/added_tokens.h"

#include <algorithm>

#include "models/tokenizer/utf8.h"

namespace lethe::tokenizer {

AddedTokenMatcher::AddedTokenMatcher(const std::vector<AddedToken>& tokens,
                                     const std::vector<std::string>& patterns) {
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string& p = patterns[i];
    if (p.empty()) continue;
    // Two tokens with one pattern: HF's matcher reports the first one added.
    if (!by_pattern_.emplace(p, Entry{tokens[i].id, tokens[i].lstrip, tokens[i].rstrip}).second) {
      continue;
    }
    if (std::find(lengths_.begin(), lengths_.end(), p.size()) == lengths_.end()) {
      lengths_.push_back(p.size());
    }
    first_byte_[static_cast<uint8_t>(p[0])] = true;
  }
  std::sort(lengths_.begin(), lengths_.end(), std::greater<>());
}

const AddedTokenMatcher::Entry* AddedTokenMatcher::match_at(std::string_view text, size_t at,
                                                            size_t& length) const {
  const size_t left = text.size() - at;
  for (size_t n : lengths_) {
    if (n > left) continue;
    auto it = by_pattern_.find(text.substr(at, n));
    if (it != by_pattern_.end()) {
      length = n;
      return &it->second;
    }
  }
  return nullptr;
}

void AddedTokenMatcher::split(std::string_view text, FunctionRef<void(size_t, size_t)> segment,
                              FunctionRef<void(int32_t)> token) const {
  size_t done = 0;  // end of the previous match (its rstrip included)
  for (size_t i = 0; i < text.size(); ++i) {
    if (!first_byte_[static_cast<uint8_t>(text[i])]) continue;
    size_t length = 0;
    const Entry* e = match_at(text, i, length);
    if (e == nullptr) continue;
    size_t begin = i, end = i + length;
    if (e->lstrip) {  // step back over whole whitespace characters, not into the previous match
      while (begin > done) {
        size_t p = begin - 1;
        while (p > done && (static_cast<uint8_t>(text[p]) & 0xC0) == 0x80) --p;
        size_t q = p;
        if (!is_unicode_whitespace(next_code_point(text, q))) break;
        begin = p;
      }
    }
    if (e->rstrip) {
      while (end < text.size()) {
        size_t q = end;
        if (!is_unicode_whitespace(next_code_point(text, q))) break;
        end = q;
      }
    }
    if (begin > done) segment(done, begin);
    token(e->id);
    done = end;
    i = end - 1;
  }
  if (done < text.size()) segment(done, text.size());
}

}  // namespace lethe::tokenizer
