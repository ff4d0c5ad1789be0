// The pieces of a SentencePiece model file (the ModelProto protobuf), read without protobuf, and
// the BPE vocabulary + merges transformers derives from them. Knows nothing about encoding text.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "models/tokenizer/bpe.h"

namespace lethe::tokenizer {

struct SentencePiecePiece {
  enum class Type { normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6 };
  std::string piece;
  Type type = Type::normal;
};

// ModelProto.pieces in id order. `bytes` is the file; errors (lethe::Error) start with `where`.
std::vector<SentencePiecePiece> read_sentencepiece_pieces(std::string_view bytes,
                                                          const std::string& where);

// What transformers 5 builds for a LlamaTokenizer from tokenizer.model alone
// (SentencePieceExtractor + generate_merges): every piece in the vocabulary at its id; as merges,
// for every piece in id order, each split into two vocabulary pieces, shorter left part first;
// control pieces as special added tokens and user-defined pieces as non-special ones (both matched
// in the raw text). The pipeline is left at BPEOptions' defaults for the caller to set.
BPEOptions sentencepiece_bpe_options(const std::vector<SentencePiecePiece>& pieces,
                                     const std::string& where);

}  // namespace lethe::tokenizer
