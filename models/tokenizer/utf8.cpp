#include "models/tokenizer/utf8.h"

#include <cstring>

#include "engine/error.h"

namespace lethe::tokenizer {
namespace {

// For a lead byte: the sequence length (0 if the byte can never start a sequence) and the range
// the second byte must fall in (the Unicode "well-formed byte sequences" table). Later bytes are
// always 0x80..0xBF.
struct Lead {
  int len;
  uint8_t lo, hi;
};

Lead lead_of(uint8_t b) {
  if (b < 0x80) return {1, 0, 0};
  if (b >= 0xC2 && b <= 0xDF) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};
  if (b >= 0xE1 && b <= 0xEF) return {3, 0x80, 0xBF};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b >= 0xF1 && b <= 0xF3) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

// Number of bytes of s[i..] that form a valid prefix of the sequence led by s[i] (at least 1);
// equals lead.len when the whole sequence is valid.
int valid_prefix(std::string_view s, size_t i, const Lead& lead) {
  int n = 1;
  if (lead.len <= 1) return n;
  if (i + 1 >= s.size()) return n;
  const auto b1 = static_cast<uint8_t>(s[i + 1]);
  if (b1 < lead.lo || b1 > lead.hi) return n;
  n = 2;
  while (n < lead.len && i + n < s.size()) {
    const auto b = static_cast<uint8_t>(s[i + n]);
    if (b < 0x80 || b > 0xBF) break;
    ++n;
  }
  return n;
}

}  // namespace

std::optional<size_t> find_invalid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    // ASCII runs, eight bytes at a time.
    while (i + 8 <= s.size()) {
      uint64_t v;
      std::memcpy(&v, s.data() + i, 8);
      if (v & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= s.size()) break;
    const auto b = static_cast<uint8_t>(s[i]);
    if (b < 0x80) {
      ++i;
      continue;
    }
    const Lead lead = lead_of(b);
    if (lead.len == 0 || valid_prefix(s, i, lead) != lead.len) return i;
    i += lead.len;
  }
  return std::nullopt;
}

void check_utf8(std::string_view s, std::string_view what) {
  if (auto at = find_invalid_utf8(s)) {
    const auto b = static_cast<unsigned>(static_cast<uint8_t>(s[*at]));
    static const char* hex = "0123456789abcdef";
    LETHE_FAIL(what, ": text is not valid UTF-8 at byte offset ", *at, " (byte 0x", hex[b >> 4],
               hex[b & 15], ")");
  }
}

std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<uint8_t>(s[i]);
    if (b < 0x80) {
      out.push_back(static_cast<char>(b));
      ++i;
      continue;
    }
    const Lead lead = lead_of(b);
    const int n = lead.len == 0 ? 1 : valid_prefix(s, i, lead);
    if (n == lead.len) {
      out.append(s.substr(i, n));
    } else {
      out.append("\xEF\xBF\xBD");  // U+FFFD for the maximal invalid subpart
    }
    i += n;
  }
  return out;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool is_unicode_whitespace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

uint32_t next_code_point(std::string_view s, size_t& i) {
  const auto b = static_cast<uint8_t>(s[i]);
  if (b < 0x80) {
    ++i;
    return b;
  }
  const int len = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
  uint32_t cp = b & (0x7F >> len);
  for (int k = 1; k < len && i + k < s.size(); ++k) {
    cp = (cp << 6) | (static_cast<uint8_t>(s[i + k]) & 0x3F);
  }
  i += len;
  return cp;
}

}  // namespace lethe::tokenizer
