// BPETokenizer: a HuggingFace tokenizers BPE pipeline — added tokens, normalizer, pre-tokenizer,
// BPE merges (byte-level as GPT-2 / OPT / Llama-3 / Qwen2, or over characters with byte fallback
// as Llama-2), post-processor and decoder. Built from already-parsed options; reading files is
// load_tokenizer's job (load.cpp, tokenizer_json.cpp).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "models/tokenizer/added_tokens.h"
#include "models/tokenizer/decoder.h"
#include "models/tokenizer/normalizer.h"
#include "models/tokenizer/pre_tokenizer.h"
#include "models/tokenizer/tokenizer.h"

namespace lethe::tokenizer {

struct BPEOptions {
  std::vector<std::pair<std::string, int32_t>> vocab;       // token -> id
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
  std::function<std::string(size_t rank)> describe_merge;   // "merges.txt line 12", for errors
  std::string source;                                       // file named in errors
  std::vector<AddedToken> added_tokens;                     // ids may repeat vocab entries
  std::string bos_token, eos_token, pad_token;              // "" = none

  // The pipeline. The last pre-tokenizer step being ByteLevel makes the model byte-level: its
  // symbols are the bytes of each word (as GPT-2's alphabet); otherwise they are its characters.
  std::vector<NormalizerStep> normalizer;
  std::vector<PreTokenizerStep> pre_tokenizer{PreTokenizerStep::byte_level(false, true)};
  std::vector<DecoderStep> decoder{DecoderStep::of(DecoderStep::Kind::byte_level)};

  // The BPE model (HF's field names).
  std::string unk_token;       // for symbols missing from the vocabulary; "" = drop them
  bool byte_fallback = false;  // a missing symbol becomes its bytes' <0xHH> tokens when present
  bool fuse_unk = false;       // consecutive unknown symbols give one unk
  bool ignore_merges = false;  // a word found whole in the vocabulary is one token

  // The post-processor: special tokens encode(text, add_special=true) puts around the text.
  std::vector<int32_t> prefix_ids, suffix_ids;

  // Words with at most this many symbols merge by a linear scan, longer ones through a heap
  // (both give HF's order: lowest rank first, leftmost first). A tuning knob, also for tests.
  size_t linear_merge_max = 48;
};

class BPETokenizer final : public Tokenizer {
 public:
  explicit BPETokenizer(BPEOptions options);
  ~BPETokenizer() override;

  std::vector<int64_t> encode(std::string_view text, bool add_special = true) const override;
  std::string decode(const std::vector<int64_t>& ids, bool skip_special = false) const override;
  int64_t vocab_size() const override { return static_cast<int64_t>(id_to_token_.size()); }
  int64_t bos_id() const override { return bos_id_; }
  int64_t eos_id() const override { return eos_id_; }
  int64_t pad_id() const override { return pad_id_; }
  std::optional<int64_t> token_to_id(std::string_view token) const override;
  std::string id_to_token(int64_t id) const override;

 private:
  struct MergeTable;
  struct WordCache;
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using StringMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

  void encode_normalized(std::string_view text, bool at_start, std::vector<int64_t>& out) const;
  void encode_word(std::string_view word, std::vector<int64_t>& out) const;
  void encode_piece(std::string_view word, std::vector<int64_t>& out) const;
  void initial_symbols(std::string_view word, std::vector<int32_t>& symbols) const;
  void merge_word(std::string_view word, std::vector<int32_t>& symbols) const;

  BPEOptions opt_;
  StringMap token_to_id_;
  std::vector<std::string> id_to_token_;
  std::vector<std::string>
      id_bytes_;  // ByteLevel decoder: what each id decodes to (pre UTF-8 repair)
  std::vector<uint8_t> is_special_;
  bool byte_level_ = true;
  int32_t byte_symbol_id_[256];    // byte-level: the id of each byte's alphabet character, or -1
  int32_t byte_fallback_id_[256];  // the id of "<0xHH>", or -1
  std::unique_ptr<MergeTable> merges_;
  AddedTokenMatcher raw_added_, normalized_added_;
  Normalizer normalizer_;
  PreTokenizer pre_tokenizer_;
  Decoder decoder_;
  std::string independent_before_;  // "▁" when words may be cut before it (see the constructor)
  int32_t unk_id_ = -1;
  int64_t bos_id_ = -1, eos_id_ = -1, pad_id_ = -1;

  static constexpr size_t kMaxCachedWord = 64;
  mutable std::mutex cache_mutex_;
  std::unique_ptr<WordCache> cache_;  // word bytes -> ids, guarded by cache_mutex_
};

// Parses dir's tokenizer.json, or vocab.json + merges.txt, with tokenizer_config.json and
// special_tokens_map.json when present, applying what transformers' tokenizer class does (see
// docs/tokenizer.md). nullopt when dir holds none of them (a SentencePiece tokenizer.model only).
// Errors name the file. load_tokenizer uses this.
std::optional<BPEOptions> bpe_options(const std::string& dir);

}  // namespace lethe::tokenizer
