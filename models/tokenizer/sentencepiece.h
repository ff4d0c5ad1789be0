// SentencePieceTokenizer: a tokenizer.model run by libsentencepiece behind lethe's interface.
// Owns no tokenisation logic of its own beyond BOS handling, id checks and UTF-8 validation.
#pragma once

#include <memory>
#include <string>

#include "models/tokenizer/tokenizer.h"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace lethe::tokenizer {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  // Loads `model_path` (lethe::Error naming it when it is missing or not a SentencePiece model).
  // add_bos: whether encode(text, true) prepends the model's BOS piece (when it has one).
  SentencePieceTokenizer(const std::string& model_path, bool add_bos);
  ~SentencePieceTokenizer() override;

  std::vector<int64_t> encode(std::string_view text, bool add_special = true) const override;
  // skip_special drops control pieces (<s>, </s>, ...) and the unknown piece.
  std::string decode(const std::vector<int64_t>& ids, bool skip_special = false) const override;
  int64_t vocab_size() const override;
  int64_t bos_id() const override;
  int64_t eos_id() const override;
  int64_t pad_id() const override;
  std::optional<int64_t> token_to_id(std::string_view token) const override;
  std::string id_to_token(int64_t id) const override;

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  std::string path_;
  bool add_bos_;
};

}  // namespace lethe::tokenizer
