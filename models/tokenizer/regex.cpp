#include "models/tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "engine/error.h"
#include "models/tokenizer/utf8.h"

namespace lethe::tokenizer {
namespace {

// Unicode White_Space, as the inside of a bracket expression.
constexpr std::string_view kWhiteSpace =
    "\\t-\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}"
    "\\x{3000}";

std::string pcre2_message(int code) {
  PCRE2_UCHAR msg[256];
  pcre2_get_error_message(code, msg, sizeof(msg));
  return reinterpret_cast<const char*>(msg);
}

}  // namespace

std::string pcre2_pattern(std::string_view p) {
  std::string out;
  out.reserve(p.size() + 64);
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char d = p[++i];
      if (d == 's') {
        out += in_class ? std::string(kWhiteSpace) : "[" + std::string(kWhiteSpace) + "]";
      } else if (d == 'S' && !in_class) {
        out += "[^" + std::string(kWhiteSpace) + "]";
      } else {
        out += c;
        out += d;
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal member, not the end of the class.
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];
      continue;
    }
    if (in_class && c == '[' && i + 1 < p.size() && p[i + 1] == ':') {  // [:alpha:]
      const size_t end = p.find(":]", i + 2);
      if (end != std::string_view::npos) {
        out.append(p.substr(i, end + 2 - i));
        i = end + 1;
        continue;
      }
    }
    if (in_class && c == ']') in_class = false;
    out += c;
  }
  return out;
}

std::string escape_literal(std::string_view literal) {
  std::string out;
  for (char c : literal) {
    if (std::string_view("\\^$.|?*+()[]{}-/#").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

struct Regex::Compiled {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Compiled() { pcre2_code_free(code); }
};

Regex::Regex(std::string_view oniguruma_pattern, const std::string& where)
    : compiled_(std::make_unique<Compiled>()) {
  const std::string pattern = pcre2_pattern(oniguruma_pattern);
  int err = 0;
  PCRE2_SIZE off = 0;
  compiled_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                  PCRE2_UTF | PCRE2_UCP, &err, &off, nullptr);
  LETHE_CHECK(compiled_->code != nullptr, where, ": PCRE2 cannot compile the pattern '",
              oniguruma_pattern, "' (as '", pattern, "') at offset ", off, ": ",
              pcre2_message(err));
  compiled_->jit = pcre2_jit_compile(compiled_->code, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() = default;

namespace {
// Match data and JIT stack of this thread, shared by every Regex (one match runs at a time).
struct PerThread {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
  PerThread() { pcre2_jit_stack_assign(context, nullptr, stack); }
  ~PerThread() {
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(data);
  }
};
}  // namespace

void Regex::split(std::string_view s, FunctionRef<void(size_t, size_t)> piece) const {
  thread_local PerThread local;
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  size_t start = 0;
  while (start < s.size()) {
    // rc == 0 only says the one-pair ovector is too small for the pattern's capture groups; the
    // whole match is still in it.
    const int rc = compiled_->jit ? pcre2_jit_match(compiled_->code, subject, s.size(), start, 0,
                                                    local.data, local.context)
                                  : pcre2_match(compiled_->code, subject, s.size(), start,
                                                PCRE2_NO_UTF_CHECK, local.data, local.context);
    if (rc == PCRE2_ERROR_NOMATCH) {
      piece(start, s.size());
      return;
    }
    LETHE_CHECK(rc >= 0, "tokenizer: pre-tokenising regex failed at byte ", start, ": ",
                pcre2_message(rc));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(local.data);
    size_t b = ov[0], e = ov[1];
    if (b > start) piece(start, b);     // the unmatched gap before the match
    if (e == b) next_code_point(s, e);  // an empty match: the next character is its own piece
    piece(b, e);
    start = e;
  }
}

}  // namespace lethe::tokenizer
