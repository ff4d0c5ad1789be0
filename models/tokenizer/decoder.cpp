#include "models/tokenizer/decoder.h"

#include "engine/error.h"
#include "models/tokenizer/utf8.h"

namespace lethe::tokenizer {
namespace {

using Kind = DecoderStep::Kind;

// Inverse of byte_level_alphabet(): code point (< 324) -> byte, -1 for the others.
const std::array<int, 324>& byte_of_code_point() {
  static const std::array<int, 324> table = [] {
    std::array<int, 324> t;
    t.fill(-1);
    const auto& alphabet = byte_level_alphabet();
    for (int b = 0; b < 256; ++b) t[alphabet[b]] = b;
    return t;
  }();
  return table;
}

// HF ByteFallback: a token "<0xHH>" (exactly six bytes; Rust's u8::from_str_radix, which also
// takes a leading '+') is that byte.
int fallback_byte(std::string_view token) {
  if (token.size() != 6 || token.substr(0, 3) != "<0x" || token[5] != '>') return -1;
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  const int hi = token[3] == '+' ? 0 : hex(token[3]), lo = hex(token[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

std::vector<std::string> byte_fallback(std::vector<std::string> tokens) {
  std::vector<std::string> out;
  std::string bytes;
  auto flush = [&] {
    if (bytes.empty()) return;
    if (!find_invalid_utf8(bytes)) {
      out.push_back(bytes);
    } else {
      for (size_t i = 0; i < bytes.size(); ++i) out.emplace_back("\xef\xbf\xbd");  // U+FFFD each
    }
    bytes.clear();
  };
  for (auto& t : tokens) {
    const int b = fallback_byte(t);
    if (b >= 0) {
      bytes.push_back(static_cast<char>(b));
    } else {
      flush();
      out.push_back(std::move(t));
    }
  }
  flush();
  return out;
}

std::string replace_all(const std::string& s, const std::string& from, const std::string& to) {
  if (from.empty()) return s;
  std::string out;
  size_t pos = 0;
  for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
    out.append(s, pos, hit - pos);
    out += to;
  }
  out.append(s, pos, std::string::npos);
  return out;
}

// HF Strip: up to `start` leading and `stop` trailing occurrences of one character.
std::string strip(const std::string& token, const std::string& ch, size_t start, size_t stop) {
  std::vector<size_t> at;  // byte offset of each character, plus the end
  for (size_t i = 0; i < token.size();) {
    at.push_back(i);
    next_code_point(token, i);
  }
  const size_t n = at.size();
  at.push_back(token.size());
  auto is_ch = [&](size_t k) { return token.compare(at[k], at[k + 1] - at[k], ch) == 0; };
  size_t begin = 0, end = n;
  while (begin < start && begin < n && is_ch(begin)) ++begin;
  while (n - end < stop && end > begin && is_ch(end - 1)) --end;
  return token.substr(at[begin], at[end] - at[begin]);
}

}  // namespace

const std::array<uint32_t, 256>& byte_level_alphabet() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      t[b] = printable ? static_cast<uint32_t>(b) : next++;
    }
    return t;
  }();
  return table;
}

std::string Decoder::byte_level_bytes(std::string_view token) {
  const auto& byte_of = byte_of_code_point();
  std::string bytes;
  for (size_t i = 0; i < token.size();) {
    const uint32_t cp = next_code_point(token, i);
    if (cp >= byte_of.size() || byte_of[cp] < 0) return std::string(token);
    bytes.push_back(static_cast<char>(byte_of[cp]));
  }
  return bytes;
}

Decoder::Decoder(std::vector<DecoderStep> steps) : steps_(std::move(steps)) {}

bool Decoder::is_byte_level() const {
  return steps_.size() == 1 && steps_[0].kind == Kind::byte_level;
}

std::string Decoder::decode(const std::vector<std::string_view>& token_views) const {
  if (steps_.empty()) {  // no decoder: HF joins the tokens with spaces
    std::string out;
    for (size_t i = 0; i < token_views.size(); ++i) {
      if (i > 0) out += ' ';
      out.append(token_views[i]);
    }
    return out;
  }
  std::vector<std::string> tokens(token_views.begin(), token_views.end());
  for (const DecoderStep& step : steps_) {
    switch (step.kind) {
      case Kind::byte_level: {  // every token to bytes, then one lossily decoded string
        std::string bytes;
        for (const auto& t : tokens) bytes += byte_level_bytes(t);
        tokens.assign(1, utf8_lossy(bytes));
        break;
      }
      case Kind::replace:
        for (auto& t : tokens) t = replace_all(t, step.text, step.replacement);
        break;
      case Kind::byte_fallback: tokens = byte_fallback(std::move(tokens)); break;
      case Kind::fuse: {
        std::string all;
        for (const auto& t : tokens) all += t;
        tokens.assign(1, std::move(all));
        break;
      }
      case Kind::strip:
        for (auto& t : tokens) t = strip(t, step.text, step.start, step.stop);
        break;
      case Kind::metaspace:
        for (size_t i = 0; i < tokens.size(); ++i) {
          const std::string with = i == 0 && !step.prepend_never ? "" : " ";
          tokens[i] = replace_all(tokens[i], step.text, with);
        }
        break;
    }
  }
  std::string out;
  for (const auto& t : tokens) out += t;
  return out;
}

}  // namespace lethe::tokenizer
