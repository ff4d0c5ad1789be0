#include "models/tokenizer/sentencepiece.h"

#include <sentencepiece_processor.h>

#include <filesystem>

#include "engine/error.h"
#include "engine/io/file_util.h"
#include "models/tokenizer/utf8.h"

namespace lethe::tokenizer {

SentencePieceTokenizer::SentencePieceTokenizer(const std::string& model_path, bool add_bos)
    : sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()), path_(model_path) {
  // Read through lethe::io (a regular file, bounded size; a FIFO cannot block), then parse.
  const std::string bytes = io::read_text_file(model_path);
  sentencepiece::util::Status status;
  try {
    status = sp_->LoadFromSerializedProto(bytes);
  } catch (const std::exception& e) {
    // The library throws (not returns a status) for some malformed models, e.g. a zero-length
    // piece rejected by its trie builder (found by fuzz_sentencepiece).
    LETHE_FAIL(model_path, ": not a valid SentencePiece model (", e.what(), ")");
  }
  LETHE_CHECK(status.ok(), model_path, ": not a valid SentencePiece model (", status.ToString(),
              ")");
  LETHE_CHECK(sp_->GetPieceSize() > 0, model_path, ": SentencePiece model has no pieces");
  add_bos_ = add_bos && sp_->bos_id() >= 0;
}

SentencePieceTokenizer::~SentencePieceTokenizer() = default;

std::vector<int64_t> SentencePieceTokenizer::encode(std::string_view text, bool add_special) const {
  check_utf8(text, "tokenizer encode");
  std::vector<int> pieces;
  const auto status = sp_->Encode(text, &pieces);
  LETHE_CHECK(status.ok(), path_, ": SentencePiece encode failed: ", status.ToString());
  std::vector<int64_t> out;
  out.reserve(pieces.size() + 1);
  if (add_special && add_bos_) out.push_back(sp_->bos_id());
  out.insert(out.end(), pieces.begin(), pieces.end());
  return out;
}

std::string SentencePieceTokenizer::decode(const std::vector<int64_t>& ids,
                                           bool skip_special) const {
  std::vector<int> pieces;
  pieces.reserve(ids.size());
  for (int64_t id : ids) {
    if (id < 0 || id >= vocab_size()) continue;  // as the BPE tokenizer: ids without a piece
    const int i = static_cast<int>(id);
    if (skip_special && (sp_->IsControl(i) || sp_->IsUnknown(i))) continue;
    pieces.push_back(i);
  }
  std::string text;
  const auto status = sp_->Decode(pieces, &text);
  LETHE_CHECK(status.ok(), path_, ": SentencePiece decode failed: ", status.ToString());
  return text;
}

int64_t SentencePieceTokenizer::vocab_size() const {
  return sp_->GetPieceSize();
}
int64_t SentencePieceTokenizer::bos_id() const {
  return sp_->bos_id();
}
int64_t SentencePieceTokenizer::eos_id() const {
  return sp_->eos_id();
}
int64_t SentencePieceTokenizer::pad_id() const {
  return sp_->pad_id();
}

std::optional<int64_t> SentencePieceTokenizer::token_to_id(std::string_view token) const {
  const int id = sp_->PieceToId(token);
  // PieceToId answers unk_id() for unknown pieces; only the unknown piece itself maps there.
  if (id == sp_->unk_id() && sp_->IdToPiece(id) != token) return std::nullopt;
  return id;
}

std::string SentencePieceTokenizer::id_to_token(int64_t id) const {
  if (id < 0 || id >= vocab_size()) return {};
  return sp_->IdToPiece(static_cast<int>(id));
}

}  // namespace lethe::tokenizer
