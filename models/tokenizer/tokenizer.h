// lethe::tokenizer — the text <-> token-id interface every model uses, and load_tokenizer(dir).
// Depends on nothing but the standard library here; no Tensor, no model code, no file parsing.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lethe::tokenizer {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Token ids of `text` (which must be valid UTF-8: otherwise lethe::Error naming the byte
  // offset). add_special adds the special tokens the tokenizer's configuration puts around a text
  // (HF's add_special_tokens): the BOS where there is one (OPT: `</s>`, id 2; Llama-3:
  // <|begin_of_text|>), and whatever else the post-processor's template adds. Thread-safe.
  virtual std::vector<int64_t> encode(std::string_view text, bool add_special = true) const = 0;
  // Text of `ids`; invalid UTF-8 byte sequences become U+FFFD, ids without a token are skipped
  // (both as HuggingFace does). skip_special drops special tokens. Thread-safe.
  virtual std::string decode(const std::vector<int64_t>& ids, bool skip_special = false) const = 0;
  // One more than the largest id (vocabulary plus added tokens).
  virtual int64_t vocab_size() const = 0;
  // -1 when the tokenizer has no such token.
  virtual int64_t bos_id() const = 0;
  virtual int64_t eos_id() const = 0;
  virtual int64_t pad_id() const = 0;
  virtual std::optional<int64_t> token_to_id(std::string_view token) const = 0;
  // The vocabulary string of `id` (byte-level form for BPE, e.g. "Ġthe"); "" when id has none.
  virtual std::string id_to_token(int64_t id) const = 0;
};

// dir holds tokenizer.json (a BPE: GPT-2 / OPT, Llama-3, Qwen2, Llama-2 style), or vocab.json +
// merges.txt, or tokenizer.model (SentencePiece); tried in that order, with tokenizer_config.json
// and special_tokens_map.json when present. Errors (lethe::Error) name the file
// (docs/tokenizer.md).
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& dir);

}  // namespace lethe::tokenizer
