// Training data: reads the data sets lethe unlearns and fine-tunes on (TOFU, PKU-SafeRLHF,
// TruthfulQA, MUSE, plain and pre-tokenised JSONL) and turns them into token samples through a
// prompt template. No tensors and no model code here: samples are plain id vectors.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "models/tokenizer/tokenizer.h"

namespace lethe::trainers::data {

// One training sample, as HuggingFace's collators see it: labels aligned with input_ids (the
// model shifts them), -100 where a token is not a target (prompt, padding). A sequence
// classifier's sample has no token target (labels all -100) and its class in `class_label`.
struct Sample {
  std::vector<int64_t> input_ids;
  std::vector<int64_t> labels;
  int64_t class_label = -1;  // the sequence's class; -1 for a language-modelling sample
};

// One record of a text data set, format-independent: its named string fields ("question",
// "answer", "paraphrased_answer", "paraphrased_question", "text", "prompt", "completion", …) and
// list fields ("perturbed_answer", "correct_answers", "incorrect_answers", …). `source` names the
// file and line ("forget10.json:17") for error messages.
struct Record {
  std::map<std::string, std::string> fields;
  std::map<std::string, std::vector<std::string>> lists;
  std::string source;
};

enum class Format { tofu, pku, truthfulqa, muse, jsonl, tokenized };

// "tofu" -> Format::tofu, ...; throws lethe::Error listing the valid names.
Format parse_format(const std::string& name);
const char* format_name(Format f);

// How the prompt and the answer become tokens (docs/data.md). `separate` (the default):
// encode(prompt) with BOS, then encode(answer) without BOS, so the label boundary is exactly the
// text boundary. `joint`: encode(prompt + answer) with BOS, the first |encode(prompt)| tokens
// masked — what open-unlearning's and TOFU's collators do (a token that straddles the boundary
// is then masked as prompt).
enum class Tokenization { separate, joint };

struct SampleOptions {
  Format format = Format::jsonl;
  // A template with {question} and {answer} placeholders, or "" for the format's default
  // (docs/data.md). The prompt is the text before {answer}; only answer tokens get labels.
  std::string prompt_template;
  int64_t max_length = 512;  // truncation (tokens, BOS included); must be >= 2
  bool add_eos = true;       // append the tokenizer's EOS to the answer (labelled)
  Tokenization tokenization = Tokenization::separate;
  // The model's max_position_embeddings (0 = no check): a row longer than this after truncation
  // is an error naming its file and line (lower max_length), not a failure inside the forward.
  int64_t max_positions = 0;
};

// The template a format uses when SampleOptions::prompt_template is "": tofu
// "Question: {question}\nAnswer: {answer}", pku and truthfulqa "### Question: {question}\n
// ### Answer: {answer}" (Yao et al.), muse and jsonl "{question}{answer}". Throws for tokenized.
const char* default_prompt_template(Format f);

// The template text `prompt_template` stands for: "" is the format's default, a name below is its
// chat format (open-unlearning's model configs, docs/data.md "Chat templates"), anything else is
// the template itself.
//   llama3_chat  Llama-3 instruct headers with open-unlearning's system prompt
//   llama2_chat  "[INST] {question} [/INST]{answer}"
//   qwen2_chat   Qwen2/2.5 instruct <|im_start|> turns with the system prompt
std::string template_text(const std::string& prompt_template, Format f);
// The named chat templates, in the order above.
const std::vector<std::string>& chat_template_names();

// A record's text split where the labels start: `prompt` is not a target, `answer` is.
struct PromptAnswer {
  std::string prompt;
  std::string answer;
};

// `question` and `answer` through `prompt_template`: the prompt is the template text before
// {answer} with {question} substituted, the answer is `answer` followed by the rest of the
// template. "{{" and "}}" are literal braces. Throws lethe::Error naming the template when it has
// no {answer}, more than one, an unknown placeholder or an unmatched brace.
PromptAnswer apply_template(const std::string& prompt_template, const std::string& question,
                            const std::string& answer);

// A record's texts: "question" and "answer" through the template (an empty template: the
// format's default); a record with only "text" is all answer, with an empty prompt and no
// template. Errors name record.source.
PromptAnswer record_texts(const Record& record, const SampleOptions& options);

// One sample from texts (options.format and prompt_template are not used): the prompt tokenized
// with BOS (labels -100), the answer without BOS (labels = ids) — or both as one text, per
// options.tokenization — the EOS (labelled) when add_eos, all cut to max_length tokens. It may
// have no labelled token (make_samples checks).
Sample tokenize_sample(const PromptAnswer& texts, const SampleOptions& options,
                       const tokenizer::Tokenizer& tokenizer);

// Reads every record of a text data set (not `tokenized`). Malformed input is a lethe::Error
// naming the file and line (and the field).
std::vector<Record> load_records(const std::string& path, Format format);

// Records -> samples with the template, the tokenizer (BOS as the tokenizer adds it), EOS and
// truncation. Records that yield no labelled token after truncation are an error naming them.
std::vector<Sample> make_samples(const std::vector<Record>& records, const SampleOptions& options,
                                 const tokenizer::Tokenizer& tokenizer);

// Pre-tokenised JSONL: {"input_ids": [...], "labels": [...]} per line (labels optional: the
// input ids; -100 = ignored); truncated to max_length. `vocab_size` bounds the ids (0 = no check),
// `max_positions` the rows' lengths (0 = no check). A row with no labelled token after its first
// has nothing to predict after the shift and is refused, naming its line (docs/data.md).
std::vector<Sample> load_tokenized(const std::string& path, int64_t max_length,
                                   int64_t vocab_size = 0, int64_t max_positions = 0);

// Any format: load_tokenized for Format::tokenized, else load_records + make_samples.
// `vocab_size` > 0 also checks the ids a tokenizer produced (a tokenizer of another model).
std::vector<Sample> load_samples(const std::string& path, const SampleOptions& options,
                                 const tokenizer::Tokenizer* tokenizer, int64_t vocab_size = 0);

}  // namespace lethe::trainers::data
