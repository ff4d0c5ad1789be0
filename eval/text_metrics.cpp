// ROUGE-L, its tokenizer and the Porter stemmer, written from the rules of rouge_score 0.1.2
// (tokenize.py, rouge_scorer.py) and NLTK's nltk/stem/porter.py (mode NLTK_EXTENSIONS).
#include "eval/text_metrics.h"

#include <algorithm>
#include <cstdint>
#include <span>

namespace lethe::eval {

namespace {

// ------------------------------------------------------------------------------------------------
// Porter stemmer

bool ends_with(std::string_view w, std::string_view suffix) {
  return w.size() >= suffix.size() && w.substr(w.size() - suffix.size()) == suffix;
}

bool is_vowel_letter(char c) {
  return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u';
}

// Porter's consonant: a letter other than a, e, i, o, u, and other than a 'y' that follows a
// consonant. `prev_consonant` is the verdict for the letter before (false at the start, so a
// leading 'y' is a consonant and a run of y's alternates).
bool consonant(char c, bool prev_consonant) {
  if (is_vowel_letter(c)) return false;
  return c == 'y' ? !prev_consonant : true;
}

bool consonant_at(std::string_view w, size_t i) {
  bool cons = false;
  for (size_t k = 0; k <= i; ++k) cons = consonant(w[k], cons);
  return cons;
}

// m in [C](VC)^m[V]: the number of vowel→consonant transitions.
int measure(std::string_view s) {
  int m = 0;
  bool cons = false, prev_vowel = false;
  for (char c : s) {
    cons = consonant(c, cons);
    if (cons && prev_vowel) ++m;
    prev_vowel = !cons;
  }
  return m;
}

bool contains_vowel(std::string_view s) {
  bool cons = false;
  for (char c : s) {
    cons = consonant(c, cons);
    if (!cons) return true;
  }
  return false;
}

// *d: ends with a double consonant.
bool ends_double_consonant(std::string_view w) {
  const size_t n = w.size();
  return n >= 2 && w[n - 1] == w[n - 2] && consonant_at(w, n - 1);
}

// *o: ends consonant-vowel-consonant, the last not w, x or y; NLTK also accepts a two-letter
// vowel-consonant word (any consonant).
bool ends_cvc(std::string_view w) {
  const size_t n = w.size();
  if (n >= 3)
    return consonant_at(w, n - 3) && !consonant_at(w, n - 2) && consonant_at(w, n - 1) &&
           w[n - 1] != 'w' && w[n - 1] != 'x' && w[n - 1] != 'y';
  return n == 2 && !consonant_at(w, 0) && consonant_at(w, 1);
}

enum class Cond {
  always,
  m_gt0,         // measure(stem) > 0
  m_gt1,         // measure(stem) > 1
  m_gt1_s_or_t,  // measure(stem) > 1 and the stem ends in s or t (step 4's -ion)
  logi,          // NLTK's -logi: measure(stem + "l") > 0, so geo-logi and theo-logi qualify
};

struct Rule {
  std::string_view suffix;
  std::string_view replacement;
  Cond cond;
};

bool holds(Cond cond, std::string_view word, std::string_view stem) {
  switch (cond) {
    case Cond::always: return true;
    case Cond::m_gt0: return measure(stem) > 0;
    case Cond::m_gt1: return measure(stem) > 1;
    case Cond::m_gt1_s_or_t: return measure(stem) > 1 && (stem.back() == 's' || stem.back() == 't');
    case Cond::logi: return measure(word.substr(0, word.size() - 3)) > 0;
  }
  return false;
}

// The first rule whose suffix the word ends with decides: if its condition holds the suffix is
// replaced, otherwise the word stays as it is (later rules are not tried).
void apply_first_match(std::string& w, std::span<const Rule> rules) {
  for (const Rule& r : rules) {
    if (!ends_with(w, r.suffix)) continue;
    const std::string_view stem = std::string_view(w).substr(0, w.size() - r.suffix.size());
    if (holds(r.cond, w, stem)) w = std::string(stem).append(r.replacement);
    return;
  }
}

void step1a(std::string& w) {
  // NLTK: a four-letter -ies word keeps its e (dies → die, ties → tie; flies → fli).
  if (w.size() == 4 && ends_with(w, "ies")) {
    w.resize(1);
    w += "ie";
    return;
  }
  static constexpr Rule rules[] = {{"sses", "ss", Cond::always},
                                   {"ies", "i", Cond::always},
                                   {"ss", "ss", Cond::always},
                                   {"s", "", Cond::always}};
  apply_first_match(w, rules);
}

void step1b(std::string& w) {
  // NLTK: -ied → -ie on four-letter words (died → die), else -i (spied → spi); nothing further.
  if (ends_with(w, "ied")) {
    const bool four = w.size() == 4;
    w.resize(w.size() - 3);
    w += four ? "ie" : "i";
    return;
  }
  if (ends_with(w, "eed")) {  // (m>0) EED → EE; an -eed word never falls through to -ed
    if (measure(std::string_view(w).substr(0, w.size() - 3)) > 0) w.pop_back();
    return;
  }
  size_t cut = 0;
  if (ends_with(w, "ed") && contains_vowel(std::string_view(w).substr(0, w.size() - 2)))
    cut = 2;
  else if (ends_with(w, "ing") && contains_vowel(std::string_view(w).substr(0, w.size() - 3)))
    cut = 3;
  if (cut == 0) return;
  w.erase(w.size() - cut);
  // Tidying after -ed / -ing: restore the e of -ate/-ble/-ize, undouble a final consonant (not
  // l, s, z), or add an e to a short cvc stem.
  if (ends_with(w, "at") || ends_with(w, "bl") || ends_with(w, "iz")) {
    w += 'e';
  } else if (ends_double_consonant(w)) {
    const char last = w.back();
    if (last != 'l' && last != 's' && last != 'z') w.pop_back();
  } else if (measure(w) == 1 && ends_cvc(w)) {
    w += 'e';
  }
}

void step1c(std::string& w) {
  // NLTK: y → i only after a consonant that is not the word's first letter (happy → happi,
  // enjoy and by stay).
  if (!ends_with(w, "y")) return;
  const size_t n = w.size() - 1;
  if (n > 1 && consonant_at(w, n - 1)) w.back() = 'i';
}

void step2(std::string& w) {
  // NLTK applies -alli → -al first and then runs step 2 again on the result.
  if (ends_with(w, "alli") && measure(std::string_view(w).substr(0, w.size() - 4)) > 0) {
    w.resize(w.size() - 2);
    step2(w);
    return;
  }
  static constexpr Rule rules[] = {
      {"ational", "ate", Cond::m_gt0}, {"tional", "tion", Cond::m_gt0},
      {"enci", "ence", Cond::m_gt0},   {"anci", "ance", Cond::m_gt0},
      {"izer", "ize", Cond::m_gt0},    {"bli", "ble", Cond::m_gt0},
      {"alli", "al", Cond::m_gt0},     {"entli", "ent", Cond::m_gt0},
      {"eli", "e", Cond::m_gt0},       {"ousli", "ous", Cond::m_gt0},
      {"ization", "ize", Cond::m_gt0}, {"ation", "ate", Cond::m_gt0},
      {"ator", "ate", Cond::m_gt0},    {"alism", "al", Cond::m_gt0},
      {"iveness", "ive", Cond::m_gt0}, {"fulness", "ful", Cond::m_gt0},
      {"ousness", "ous", Cond::m_gt0}, {"aliti", "al", Cond::m_gt0},
      {"iviti", "ive", Cond::m_gt0},   {"biliti", "ble", Cond::m_gt0},
      {"fulli", "ful", Cond::m_gt0},   {"logi", "log", Cond::logi},
  };
  apply_first_match(w, rules);
}

void step3(std::string& w) {
  static constexpr Rule rules[] = {
      {"icate", "ic", Cond::m_gt0}, {"ative", "", Cond::m_gt0},  {"alize", "al", Cond::m_gt0},
      {"iciti", "ic", Cond::m_gt0}, {"ical", "ic", Cond::m_gt0}, {"ful", "", Cond::m_gt0},
      {"ness", "", Cond::m_gt0},
  };
  apply_first_match(w, rules);
}

void step4(std::string& w) {
  static constexpr Rule rules[] = {
      {"al", "", Cond::m_gt1},   {"ance", "", Cond::m_gt1}, {"ence", "", Cond::m_gt1},
      {"er", "", Cond::m_gt1},   {"ic", "", Cond::m_gt1},   {"able", "", Cond::m_gt1},
      {"ible", "", Cond::m_gt1}, {"ant", "", Cond::m_gt1},  {"ement", "", Cond::m_gt1},
      {"ment", "", Cond::m_gt1}, {"ent", "", Cond::m_gt1},  {"ion", "", Cond::m_gt1_s_or_t},
      {"ou", "", Cond::m_gt1},   {"ism", "", Cond::m_gt1},  {"ate", "", Cond::m_gt1},
      {"iti", "", Cond::m_gt1},  {"ous", "", Cond::m_gt1},  {"ive", "", Cond::m_gt1},
      {"ize", "", Cond::m_gt1},
  };
  apply_first_match(w, rules);
}

void step5(std::string& w) {
  // 5a: (m>1) E → ; (m=1 and not *o) E → .  Both conditions are tried (unlike a rule list).
  if (ends_with(w, "e")) {
    const std::string_view stem = std::string_view(w).substr(0, w.size() - 1);
    const int m = measure(stem);
    if (m > 1 || (m == 1 && !ends_cvc(stem))) w.pop_back();
  }
  // 5b: (m>1 and *d and *L) → single letter; NLTK measures the word minus one l.
  if (ends_with(w, "ll") && measure(std::string_view(w).substr(0, w.size() - 1)) > 1) w.pop_back();
}

// NLTK's table of irregular forms, checked before any rule.
std::string_view irregular_stem(std::string_view w) {
  struct Irregular {
    std::string_view form, stem;
  };
  static constexpr Irregular kPool[] = {
      {"sky", "sky"},        {"skies", "sky"},        {"dying", "die"},
      {"lying", "lie"},      {"tying", "tie"},        {"news", "news"},
      {"innings", "inning"}, {"inning", "inning"},    {"outings", "outing"},
      {"outing", "outing"},  {"cannings", "canning"}, {"canning", "canning"},
      {"howe", "howe"},      {"proceed", "proceed"},  {"exceed", "exceed"},
      {"succeed", "succeed"}};
  for (const auto& [form, stem] : kPool)
    if (form == w) return stem;
  return {};
}

// ------------------------------------------------------------------------------------------------
// Tokenizer

// Decodes one UTF-8 character at text[i] into `cp`; returns its length, or 0 for an invalid byte.
size_t decode_utf8(std::string_view text, size_t i, uint32_t& cp) {
  const auto b0 = static_cast<unsigned char>(text[i]);
  size_t len;
  uint32_t min;
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  } else if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2, cp = b0 & 0x1F, min = 0x80;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3, cp = b0 & 0x0F, min = 0x800;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (i + len > text.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(text[i + k]);
    if ((b & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

// Python's text.lower() followed by re.sub("[^a-z0-9]+", " "): the result as a string of
// [a-z0-9] and spaces. Outside ASCII only two characters lower-case to an ASCII letter: U+0130
// (İ → "i" + U+0307) and U+212A (Kelvin sign → "k"); everything else non-ASCII separates.
std::string normalise(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    uint32_t cp = 0;
    const size_t len = decode_utf8(text, i, cp);
    i += len == 0 ? 1 : len;
    if (len == 0) {
      out += ' ';  // an invalid byte: never a letter or digit
    } else if (cp >= 'A' && cp <= 'Z') {
      out += static_cast<char>(cp - 'A' + 'a');
    } else if ((cp >= 'a' && cp <= 'z') || (cp >= '0' && cp <= '9')) {
      out += static_cast<char>(cp);
    } else if (cp == 0x130) {
      out += "i ";
    } else if (cp == 0x212A) {
      out += 'k';
    } else {
      out += ' ';
    }
  }
  return out;
}

}  // namespace

std::string porter_stem(std::string_view word) {
  std::string w(word);
  for (char& c : w)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  if (const std::string_view irregular = irregular_stem(w); !irregular.empty())
    return std::string(irregular);
  if (w.size() <= 2) return w;
  step1a(w);
  step1b(w);
  step1c(w);
  step2(w);
  step3(w);
  step4(w);
  step5(w);
  return w;
}

std::vector<std::string> rouge_tokenize(std::string_view text, bool stem) {
  const std::string norm = normalise(text);
  std::vector<std::string> tokens;
  size_t i = 0;
  while (i < norm.size()) {
    if (norm[i] == ' ') {
      ++i;
      continue;
    }
    const size_t j = std::min(norm.find(' ', i), norm.size());
    std::string token = norm.substr(i, j - i);
    // rouge_score stems only tokens longer than 3 characters, then drops empty tokens.
    if (stem && token.size() > 3) token = porter_stem(token);
    if (!token.empty()) tokens.push_back(std::move(token));
    i = j;
  }
  return tokens;
}

RougeScore rouge_l_tokens(const std::vector<std::string>& target,
                          const std::vector<std::string>& prediction) {
  if (target.empty() || prediction.empty()) return {};
  // LCS length by the usual table, one row at a time.
  std::vector<int> prev(prediction.size() + 1, 0), row(prediction.size() + 1, 0);
  for (const std::string& t : target) {
    for (size_t j = 1; j <= prediction.size(); ++j)
      row[j] = t == prediction[j - 1] ? prev[j - 1] + 1 : std::max(prev[j], row[j - 1]);
    std::swap(prev, row);
  }
  const double lcs = prev.back();
  RougeScore s;
  s.precision = lcs / static_cast<double>(prediction.size());
  s.recall = lcs / static_cast<double>(target.size());
  // rouge_score.scoring.fmeasure, evaluated in the same order.
  s.fmeasure =
      s.precision + s.recall > 0 ? 2 * s.precision * s.recall / (s.precision + s.recall) : 0.0;
  return s;
}

RougeScore rouge_l(std::string_view target, std::string_view prediction, bool stem) {
  return rouge_l_tokens(rouge_tokenize(target, stem), rouge_tokenize(prediction, stem));
}

}  // namespace lethe::eval
