// Reads a HuggingFace tokenizer.json with a BPE model into BPEOptions: vocabulary, merges, added
// tokens, normalizer, pre-tokenizer, post-processor and decoder. Anything it cannot reproduce
// exactly is a lethe::Error naming the file and the JSON path of the field. Internal to
// models/tokenizer (load.cpp); what the directory's other files add is load.cpp's job.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>

#include "models/tokenizer/bpe.h"

namespace lethe::tokenizer {

struct TokenizerJson {
  BPEOptions options;  // prefix_ids / suffix_ids from the post-processor's single template
  // The first special token of the template (the BOS when there is one).
  std::optional<std::string> template_first_token;
  bool has_template = false;
  // Some component is ByteLevel (transformers then loads a LlamaTokenizer-class folder as
  // PreTrainedTokenizerFast, i.e. the file as written).
  bool mentions_byte_level = false;
};

// `path` is only used in messages.
TokenizerJson parse_tokenizer_json(const std::string& path, const nlohmann::json& j);

// The model type of a tokenizer.json ("BPE" when the field is absent, as in older files).
std::string tokenizer_json_model_type(const nlohmann::json& j);

}  // namespace lethe::tokenizer
