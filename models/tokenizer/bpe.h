// ByteLevelBPE: GPT-2 / OPT byte-level BPE (pre-tokenising regex, byte<->unicode table, merges).
// Built from already-parsed vocab/merges/options; reading files is load_tokenizer's job (load.cpp).
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

#include "models/tokenizer/tokenizer.h"

namespace lethe::tokenizer {

// A token matched literally in the text before pre-tokenisation (HF "added token").
struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = true;  // dropped by decode(skip_special = true)
  bool lstrip = false;  // the match swallows whitespace on its left
  bool rstrip = false;  // ... and on its right
};

struct ByteLevelBPEOptions {
  std::vector<std::pair<std::string, int32_t>> vocab;       // token (byte-level form) -> id
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
  std::function<std::string(size_t rank)> describe_merge;   // "merges.txt line 12", for errors
  std::string source;                                       // file named in errors
  std::vector<AddedToken> added_tokens;                     // ids may repeat vocab entries
  std::string bos_token, eos_token, pad_token;              // "" = none
  std::string unk_token;  // the BPE model's unk (for bytes missing from the vocab); "" = drop
  bool add_bos = true;
  bool add_prefix_space = false;  // ByteLevel pre-tokenizer option
  bool use_regex = true;          // ByteLevel pre-tokenizer option
  bool ignore_merges = false;     // BPE option: a word found whole in the vocab is one token
  // Words with at most this many bytes merge by a linear scan, longer ones through a heap
  // (both give HF's order: lowest rank first, leftmost first). A tuning knob, also for tests.
  size_t linear_merge_max = 48;
};

class ByteLevelBPE final : public Tokenizer {
 public:
  explicit ByteLevelBPE(ByteLevelBPEOptions options);
  ~ByteLevelBPE() override;

  std::vector<int64_t> encode(std::string_view text, bool add_bos = true) const override;
  std::string decode(const std::vector<int64_t>& ids, bool skip_special = false) const override;
  int64_t vocab_size() const override { return static_cast<int64_t>(id_to_token_.size()); }
  int64_t bos_id() const override { return bos_id_; }
  int64_t eos_id() const override { return eos_id_; }
  int64_t pad_id() const override { return pad_id_; }
  std::optional<int64_t> token_to_id(std::string_view token) const override;
  std::string id_to_token(int64_t id) const override;

  bool adds_bos() const { return add_bos_; }

 private:
  struct Regex;
  struct MergeTable;
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using StringMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;
  struct WordCache;

  void encode_segment(std::string_view segment, std::vector<int64_t>& out) const;
  void encode_word(std::string_view word, std::vector<int64_t>& out) const;
  void merge_word(std::string_view word, std::vector<int32_t>& symbols) const;
  const AddedToken* match_added(std::string_view text, size_t at) const;

  ByteLevelBPEOptions opt_;
  StringMap token_to_id_;
  std::vector<std::string> id_to_token_;
  std::vector<std::string> id_bytes_;  // what each id decodes to, before UTF-8 repair
  std::vector<uint8_t> is_special_;
  int32_t byte_id_[256];
  std::unique_ptr<MergeTable> merges_;
  std::unique_ptr<Regex> regex_;
  std::vector<AddedToken> added_;          // longest first
  std::vector<uint8_t> added_first_byte_;  // 256 flags
  int32_t unk_id_ = -1;
  int64_t bos_id_ = -1, eos_id_ = -1, pad_id_ = -1;
  bool add_bos_ = false;

  static constexpr size_t kMaxCachedWord = 64;
  mutable std::mutex cache_mutex_;
  std::unique_ptr<WordCache> cache_;  // pre-token bytes -> ids, guarded by cache_mutex_
};

// Parses dir's tokenizer.json, or vocab.json + merges.txt, with tokenizer_config.json and
// special_tokens_map.json when present. nullopt when dir holds no byte-level BPE files (a
// SentencePiece tokenizer.model only). Errors name the file. load_tokenizer uses this.
std::optional<ByteLevelBPEOptions> byte_level_bpe_options(const std::string& dir);

}  // namespace lethe::tokenizer
