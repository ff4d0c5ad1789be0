// Records -> token samples: prompt templates, the prompt/answer tokenization, EOS, truncation and
// the label mask; and load_samples, the one entry point for every format.
#include <algorithm>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "engine/error.h"
#include "engine/io/json.h"
#include "trainers/data/dataset.h"

namespace lethe::trainers::data {

namespace {

constexpr int64_t kIgnore = -100;

// A template cut at {answer}: each half is literal text with {question} slots.
struct ParsedTemplate {
  struct Piece {
    bool is_question = false;
    std::string text;  // literal text when !is_question
  };
  std::vector<Piece> before_answer;
  std::vector<Piece> after_answer;
};

// The template as a JSON string ("Question: {question}\nAnswer: {answer}") for messages.
std::string shown(const std::string& prompt_template) {
  return io::json_excerpt(nlohmann::json(prompt_template), 200);
}

ParsedTemplate parse_template(const std::string& t) {
  ParsedTemplate parsed;
  std::vector<ParsedTemplate::Piece>* pieces = &parsed.before_answer;
  int answers = 0;
  std::string literal;
  auto flush = [&] {
    if (!literal.empty()) pieces->push_back({false, std::move(literal)});
    literal.clear();
  };
  const auto fail = [&](auto&&... what) {
    LETHE_FAIL("prompt template ", shown(t), ": ", what...,
               " (placeholders: {question}, {answer}; write {{ and }} for literal braces)");
  };
  for (size_t i = 0; i < t.size();) {
    const char c = t[i];
    if ((c == '{' || c == '}') && i + 1 < t.size() && t[i + 1] == c) {
      literal.push_back(c);
      i += 2;
    } else if (c == '{') {
      const size_t close = t.find_first_of("{}", i + 1);
      if (close == std::string::npos || t[close] != '}') fail("unmatched '{' at offset ", i);
      const std::string name = t.substr(i + 1, close - i - 1);
      flush();
      if (name == "question") {
        pieces->push_back({true, ""});
      } else if (name == "answer") {
        if (++answers > 1) fail("{answer} appears more than once");
        pieces = &parsed.after_answer;
      } else {
        fail("unknown placeholder {", name, "}");
      }
      i = close + 1;
    } else if (c == '}') {
      fail("unmatched '}' at offset ", i);
    } else {
      literal.push_back(c);
      ++i;
    }
  }
  flush();
  // A misspelt chat format's name lands here too: the message names the valid ones.
  if (answers == 0)
    fail(
        "no {answer} placeholder (the labelled answer starts where it stands; a chat format is "
        "named llama3_chat, llama2_chat or qwen2_chat)");
  return parsed;
}

std::string render(const std::vector<ParsedTemplate::Piece>& pieces, const std::string& question) {
  std::string out;
  for (const auto& p : pieces) out += p.is_question ? question : p.text;
  return out;
}

PromptAnswer apply_parsed(const ParsedTemplate& t, const std::string& question,
                          const std::string& answer) {
  return {render(t.before_answer, question), answer + render(t.after_answer, question)};
}

std::string resolve_template(const SampleOptions& options) {
  return template_text(options.prompt_template, options.format);
}

// The named chat formats: open-unlearning's template_args for Llama-3.2-1B-Instruct and
// Llama-2-7b-chat-hf (apply_chat_template false: system_prompt_with_special_tokens, then
// user_start_tag, the question, user_end_tag, asst_start_tag) and what Qwen2.5-Instruct's chat
// template renders for a system, user and assistant turn (open-unlearning applies it there).
struct ChatTemplate {
  const char* name;
  const char* text;
};
constexpr ChatTemplate kChatTemplates[] = {
    {"llama3_chat",
     "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful "
     "assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n{question}<|eot_id|><|start_"
     "header_id|>assistant<|end_header_id|>\n\n{answer}"},
    {"llama2_chat", "[INST] {question} [/INST]{answer}"},
    {"qwen2_chat",
     "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n{question}<|"
     "im_end|>\n<|im_start|>assistant\n{answer}<|im_end|>\n"},
};

PromptAnswer texts_of(const Record& record, const ParsedTemplate& t) {
  const auto q = record.fields.find("question");
  const auto a = record.fields.find("answer");
  if (q != record.fields.end() && a != record.fields.end())
    return apply_parsed(t, q->second, a->second);
  LETHE_CHECK(q == record.fields.end() && a == record.fields.end(), record.source, ": field \"",
              q == record.fields.end() ? "question" : "answer",
              "\": missing (a record needs \"question\" and \"answer\", or only \"text\")");
  const auto text = record.fields.find("text");
  LETHE_CHECK(text != record.fields.end(), record.source,
              ": the record has neither \"question\" and \"answer\" nor \"text\"");
  return {"", text->second};  // a text record: all of it is the answer
}

void check_options(const SampleOptions& options) {
  LETHE_CHECK(options.max_length >= 2, "max_length must be at least 2 (BOS and one token), got ",
              options.max_length);
}

// A token to predict: a label after the first (HF's shift makes position 0's label no target).
bool has_label(const Sample& s) {
  for (size_t i = 1; i < s.labels.size(); ++i)
    if (s.labels[i] != kIgnore) return true;
  return false;
}

}  // namespace

const char* default_prompt_template(Format f) {
  switch (f) {
    case Format::tofu: return "Question: {question}\nAnswer: {answer}";
    case Format::pku:
    case Format::truthfulqa: return "### Question: {question}\n ### Answer: {answer}";
    case Format::muse:
    case Format::jsonl: return "{question}{answer}";
    case Format::tokenized: break;
  }
  LETHE_FAIL("format ", format_name(f), " has no prompt template (it holds token ids)");
}

std::string template_text(const std::string& prompt_template, Format f) {
  if (prompt_template.empty()) return default_prompt_template(f);
  for (const ChatTemplate& t : kChatTemplates)
    if (prompt_template == t.name) return t.text;
  return prompt_template;
}

const std::vector<std::string>& chat_template_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const ChatTemplate& t : kChatTemplates) v.push_back(t.name);
    return v;
  }();
  return names;
}

PromptAnswer apply_template(const std::string& prompt_template, const std::string& question,
                            const std::string& answer) {
  // A chat template's name stands for its text; "" stays "" (and is refused: no {answer}).
  const std::string t =
      prompt_template.empty() ? prompt_template : template_text(prompt_template, Format::jsonl);
  return apply_parsed(parse_template(t), question, answer);
}

PromptAnswer record_texts(const Record& record, const SampleOptions& options) {
  return texts_of(record, parse_template(resolve_template(options)));
}

Sample tokenize_sample(const PromptAnswer& texts, const SampleOptions& options,
                       const tokenizer::Tokenizer& tokenizer) {
  check_options(options);
  Sample s;
  if (options.tokenization == Tokenization::separate) {
    // Byte-level BPE attaches a space to the word after it ("Ġthe"). A prompt ending in spaces
    // ("Answer: ") hands them to the answer, so the answer's first word is tokenized as in
    // running text (not as a lone "Ġ" token + "the") and the label boundary stays exact.
    std::string prompt = texts.prompt, answer_text = texts.answer;
    if (tokenizer.token_to_id("\u0120").has_value()) {
      const size_t keep = prompt.find_last_not_of(' ') + 1;  // 0 when all spaces
      answer_text = prompt.substr(keep) + answer_text;
      prompt.resize(keep);
    }
    s.input_ids = tokenizer.encode(prompt, true);
    s.labels.assign(s.input_ids.size(), kIgnore);
    const std::vector<int64_t> answer = tokenizer.encode(answer_text, false);
    s.input_ids.insert(s.input_ids.end(), answer.begin(), answer.end());
    s.labels.insert(s.labels.end(), answer.begin(), answer.end());
  } else {
    s.input_ids = tokenizer.encode(texts.prompt + texts.answer, true);
    const size_t masked = std::min(tokenizer.encode(texts.prompt, true).size(), s.input_ids.size());
    s.labels = s.input_ids;
    std::fill(s.labels.begin(), s.labels.begin() + static_cast<std::ptrdiff_t>(masked), kIgnore);
  }
  if (options.add_eos) {
    const int64_t eos = tokenizer.eos_id();
    LETHE_CHECK(eos >= 0, "add_eos is set but the tokenizer has no EOS token");
    s.input_ids.push_back(eos);
    s.labels.push_back(eos);
  }
  if (s.input_ids.size() > static_cast<size_t>(options.max_length)) {
    s.input_ids.resize(static_cast<size_t>(options.max_length));
    s.labels.resize(static_cast<size_t>(options.max_length));
  }
  return s;
}

std::vector<Sample> make_samples(const std::vector<Record>& records, const SampleOptions& options,
                                 const tokenizer::Tokenizer& tokenizer) {
  check_options(options);
  const ParsedTemplate t = parse_template(resolve_template(options));
  std::vector<Sample> samples;
  samples.reserve(records.size());
  std::vector<std::string> unlabelled;
  for (const Record& record : records) {
    const PromptAnswer texts = texts_of(record, t);
    try {
      samples.push_back(tokenize_sample(texts, options, tokenizer));
    } catch (const Error& e) {  // e.g. text that is not valid UTF-8: say which record
      throw Error(record.source + ": " + e.what());
    }
    if (!has_label(samples.back())) unlabelled.push_back(record.source);
    LETHE_CHECK(options.max_positions <= 0 ||
                    static_cast<int64_t>(samples.back().input_ids.size()) <= options.max_positions,
                record.source, ": ", samples.back().input_ids.size(),
                " tokens, more than the model's ", options.max_positions,
                " positions (max_position_embeddings); lower data.max_length to ",
                options.max_positions);
  }
  if (!unlabelled.empty()) {
    std::string names;
    for (size_t i = 0; i < unlabelled.size() && i < 5; ++i)
      names += (i ? ", " : "") + unlabelled[i];
    if (unlabelled.size() > 5) names += ", ...";
    LETHE_FAIL(unlabelled.size(), " of ", records.size(),
               " records have no labelled token after truncation to max_length ",
               options.max_length,
               " (a prompt that fills it, or an empty answer without add_eos): ", names);
  }
  return samples;
}

std::vector<Sample> load_samples(const std::string& path, const SampleOptions& options,
                                 const tokenizer::Tokenizer* tokenizer, int64_t vocab_size) {
  if (options.format == Format::tokenized)
    return load_tokenized(path, options.max_length, vocab_size, options.max_positions);
  LETHE_CHECK(tokenizer != nullptr, path, ": format ", format_name(options.format),
              " needs a tokenizer");
  LETHE_CHECK(vocab_size >= 0, "vocab_size must be >= 0 (0: no check), got ", vocab_size);
  const std::vector<Record> records = load_records(path, options.format);
  std::vector<Sample> samples = make_samples(records, options, *tokenizer);
  if (vocab_size > 0) {
    for (size_t i = 0; i < samples.size(); ++i)
      for (int64_t id : samples[i].input_ids)
        LETHE_CHECK(id >= 0 && id < vocab_size, records[i].source, ": token id ", id,
                    " from the tokenizer is outside the model's vocabulary [0, ", vocab_size,
                    "): the tokenizer does not match the model");
  }
  return samples;
}

}  // namespace lethe::trainers::data
