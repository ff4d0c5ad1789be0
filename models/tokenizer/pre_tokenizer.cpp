#include "models/tokenizer/pre_tokenizer.h"

#include "models/tokenizer/regex.h"

namespace lethe::tokenizer {

using Kind = PreTokenizerStep::Kind;

PreTokenizer::PreTokenizer(std::vector<PreTokenizerStep> steps) : steps_(std::move(steps)) {
  for (const auto& s : steps_) {
    if (s.kind == Kind::split) {
      regexes_.push_back(std::make_unique<Regex>(s.pattern, s.where));
    } else if (s.kind == Kind::byte_level && s.use_regex) {
      regexes_.push_back(std::make_unique<Regex>(kGpt2Pattern, "tokenizer: GPT-2 pattern"));
    } else {
      regexes_.push_back(nullptr);
    }
  }
  passthrough_.assign(steps_.size() + 1, true);
  for (size_t i = steps_.size(); i-- > 0;) {
    const PreTokenizerStep& s = steps_[i];
    passthrough_[i] =
        passthrough_[i + 1] && s.kind == Kind::byte_level && !s.add_prefix_space && !s.use_regex;
  }
}

PreTokenizer::~PreTokenizer() = default;
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;

void PreTokenizer::run(std::string_view text, bool at_start,
                       FunctionRef<void(std::string_view)> emit) const {
  if (!text.empty()) run_from(0, text, at_start, emit);
}

void PreTokenizer::run_from(size_t i, std::string_view text, bool at_start,
                            FunctionRef<void(std::string_view)> emit) const {
  if (passthrough_[i]) {
    emit(text);
    return;
  }
  const PreTokenizerStep& step = steps_[i];
  const Regex* regex = regexes_[i].get();
  auto split_by_regex = [&](std::string_view piece, bool piece_at_start) {
    if (passthrough_[i + 1]) {  // the common case (GPT-2, Llama-3, Qwen2): no recursion per word
      regex->split(piece, [&](size_t b, size_t e) { emit(piece.substr(b, e - b)); });
      return;
    }
    regex->split(piece, [&](size_t b, size_t e) {
      run_from(i + 1, piece.substr(b, e - b), piece_at_start && b == 0, emit);
    });
  };
  switch (step.kind) {
    case Kind::split: split_by_regex(text, at_start); return;
    case Kind::byte_level: {
      std::string prefixed;
      if (step.add_prefix_space && text.front() != ' ') {
        prefixed.reserve(text.size() + 1);
        prefixed.push_back(' ');
        prefixed.append(text);
        text = prefixed;
      }
      if (regex != nullptr) {
        split_by_regex(text, at_start);
      } else {
        run_from(i + 1, text, at_start, emit);
      }
      return;
    }
    case Kind::metaspace: {
      const std::string& rep = step.replacement;
      std::string out;
      out.reserve(text.size() + 2 * rep.size());
      const bool starts_with_rep = text.front() == ' ' || text.substr(0, rep.size()) == rep;
      if (!starts_with_rep && (step.prepend == PreTokenizerStep::Prepend::always ||
                               (step.prepend == PreTokenizerStep::Prepend::first && at_start))) {
        out += rep;
      }
      for (char c : text) {
        if (c == ' ') {
          out += rep;
        } else {
          out += c;
        }
      }
      if (!step.split) {
        run_from(i + 1, out, at_start, emit);
        return;
      }
      // Cut before every replacement character (HF's MergedWithNext on the replacement).
      const std::string_view all = out;
      size_t begin = 0;
      for (size_t pos = all.find(rep, 1); pos != std::string_view::npos;
           pos = all.find(rep, pos + rep.size())) {
        if (pos > begin)
          run_from(i + 1, all.substr(begin, pos - begin), at_start && begin == 0, emit);
        begin = pos;
      }
      run_from(i + 1, all.substr(begin), at_start && begin == 0, emit);
      return;
    }
  }
}

}  // namespace lethe::tokenizer
