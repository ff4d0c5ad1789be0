#include "models/tokenizer/normalizer.h"

#include <utf8proc.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "engine/error.h"
#include "models/tokenizer/utf8.h"

namespace lethe::tokenizer {
namespace {

using Kind = NormalizerStep::Kind;

// Code points NFC leaves alone whatever surrounds them, as long as their neighbours are such
// code points too: combining class 0, never the second character of a canonical composition,
// and either no canonical decomposition or one that starts with a starter that is no second and
// that NFC composes back (é: yes; U+212B, which NFC maps to U+00C5: no). In such text nothing
// reorders (every character is a starter), each character's decomposition recomposes to it, and
// nothing composes across characters (no character starts with a second). The second of every
// primary composite is the last code point of its full canonical decomposition (true of all 1026
// pairs in Unicode), which is how the table finds them in utf8proc's data.
const std::vector<bool>& nfc_inert() {
  static const std::vector<bool> table = [] {
    constexpr utf8proc_int32_t kEnd = 0x110000;
    std::vector<bool> second(kEnd, false);
    std::vector<utf8proc_int32_t> decomposing;  // code points with a canonical decomposition
    utf8proc_int32_t buf[32];
    int last_class = 0;
    for (utf8proc_int32_t cp = 0; cp < kEnd; ++cp) {
      const utf8proc_property_t* p = utf8proc_get_property(cp);
      if (p->decomp_seqindex == UINT16_MAX || p->decomp_type != 0) continue;  // none / compat
      decomposing.push_back(cp);
      const utf8proc_ssize_t n =
          utf8proc_decompose_char(cp, buf, 32, UTF8PROC_DECOMPOSE, &last_class);
      if (n >= 2 && n <= 32 && !p->comp_exclusion) second[buf[n - 1]] = true;
    }
    for (utf8proc_int32_t cp = 0x1161; cp <= 0x1175; ++cp) second[cp] = true;  // Hangul vowels
    for (utf8proc_int32_t cp = 0x11A8; cp <= 0x11C2; ++cp) second[cp] = true;  // and finals
    std::vector<bool> inert(kEnd);
    for (utf8proc_int32_t cp = 0; cp < kEnd; ++cp) {
      inert[cp] = utf8proc_get_property(cp)->combining_class == 0 && !second[cp];
    }
    for (utf8proc_int32_t cp : decomposing) {
      if (!inert[cp]) continue;
      const utf8proc_ssize_t n =
          utf8proc_decompose_char(cp, buf, 32, UTF8PROC_DECOMPOSE, &last_class);
      std::string alone;
      append_utf8(alone, static_cast<uint32_t>(cp));
      utf8proc_uint8_t* composed = nullptr;
      const utf8proc_ssize_t m =
          utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(alone.data()),
                       static_cast<utf8proc_ssize_t>(alone.size()), &composed,
                       static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
      const bool recomposes = m == static_cast<utf8proc_ssize_t>(alone.size()) &&
                              std::memcmp(composed, alone.data(), alone.size()) == 0;
      std::free(composed);
      inert[cp] = n >= 1 && n <= 32 && recomposes && !second[buf[0]] &&
                  utf8proc_get_property(buf[0])->combining_class == 0;
    }
    return inert;
  }();
  return table;
}

std::string utf8proc_normalize(Kind kind, std::string_view text) {
  int options = UTF8PROC_STABLE;
  switch (kind) {
    case Kind::nfc: options |= UTF8PROC_COMPOSE; break;
    case Kind::nfd: options |= UTF8PROC_DECOMPOSE; break;
    case Kind::nfkc: options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
    case Kind::nfkd: options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
    default: break;
  }
  utf8proc_uint8_t* out = nullptr;
  const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                          static_cast<utf8proc_ssize_t>(text.size()), &out,
                                          static_cast<utf8proc_option_t>(options));
  // The text was validated as UTF-8 before it got here, so only memory can fail.
  LETHE_CHECK(n >= 0, "tokenizer: Unicode normalisation failed: ", utf8proc_errmsg(n));
  std::string result(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
  std::free(out);
  return result;
}

// NFC one stretch at a time: the text is cut before every NFC-inert code point (nothing
// reorders or composes across such a cut), inert stretches are copied and only the stretches
// around other code points (é as e + U+0301, Hangul jamo, U+212B) go through utf8proc.
std::string nfc(std::string_view text) {
  const auto& inert = nfc_inert();
  std::string out;
  size_t copied = 0;      // text[0, copied) is in `out`
  size_t last_inert = 0;  // where the latest inert code point starts
  bool seen_inert = false;
  for (size_t i = 0; i < text.size();) {
    const size_t at = i;
    if (inert[next_code_point(text, i)]) {
      last_inert = at;
      seen_inert = true;
      continue;
    }
    // A stretch to normalise: from the inert code point before (a mark may compose with it)
    // to the next inert code point.
    const size_t begin = seen_inert && last_inert >= copied ? last_inert : copied;
    size_t end = i;
    while (end < text.size()) {
      size_t next = end;
      if (inert[next_code_point(text, next)]) break;
      end = next;
    }
    if (out.empty()) out.reserve(text.size());
    out.append(text.substr(copied, begin - copied));
    out += utf8proc_normalize(Kind::nfc, text.substr(begin, end - begin));
    copied = i = end;
    seen_inert = false;
  }
  if (copied == 0) return std::string(text);
  out.append(text.substr(copied));
  return out;
}

std::string unicode_normalize(Kind kind, std::string_view text) {
  if (kind == Kind::nfc) return nfc(text);
  size_t i = 0;  // ASCII is left alone by every form
  while (i < text.size() && static_cast<unsigned char>(text[i]) < 0x80) ++i;
  return i == text.size() ? std::string(text) : utf8proc_normalize(kind, text);
}

std::string replace_all(std::string_view text, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  for (size_t hit; (hit = text.find(from, pos)) != std::string_view::npos;
       pos = hit + from.size()) {
    out.append(text.substr(pos, hit - pos));
    out.append(to);
  }
  out.append(text.substr(pos));
  return out;
}

}  // namespace

Normalizer::Normalizer(std::vector<NormalizerStep> steps) : steps_(std::move(steps)) {
  for (const auto& s : steps_) {
    LETHE_CHECK(s.kind != Kind::replace || !s.text.empty(),
                "tokenizer: a Replace normalizer needs a non-empty pattern");
  }
}

std::string Normalizer::apply(std::string_view text) const {
  std::string current(text);
  for (const auto& step : steps_) {
    switch (step.kind) {
      case Kind::prepend:
        if (!current.empty()) current.insert(0, step.text);
        break;
      case Kind::replace:
        if (current.find(step.text) != std::string::npos) {
          current = replace_all(current, step.text, step.replacement);
        }
        break;
      default: current = unicode_normalize(step.kind, current); break;
    }
  }
  return current;
}

}  // namespace lethe::tokenizer
