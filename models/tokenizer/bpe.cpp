#include "models/tokenizer/bpe.h"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstring>
#include <queue>

#include "engine/error.h"
#include "models/tokenizer/utf8.h"

namespace lethe::tokenizer {

// (left id, right id) -> (rank, merged id), open addressing; the hot lookup of merge_word.
struct BPETokenizer::MergeTable {
  struct Slot {
    uint64_t key = ~uint64_t{0};
    int32_t rank = -1, merged = -1;
  };
  std::vector<Slot> slots;
  uint64_t mask = 0;

  static uint64_t key_of(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  static size_t hash(uint64_t k) { return static_cast<size_t>((k * 0x9E3779B97F4A7C15ull) >> 20); }

  explicit MergeTable(size_t n) {
    size_t cap = 16;
    while (cap < 2 * n + 1) cap <<= 1;
    slots.resize(cap);
    mask = cap - 1;
  }
  // False when the pair is already present (HF keeps the first rank).
  bool insert(int32_t a, int32_t b, int32_t rank, int32_t merged) {
    const uint64_t k = key_of(a, b);
    for (size_t i = hash(k) & mask;; i = (i + 1) & mask) {
      if (slots[i].key == k) return false;
      if (slots[i].rank < 0) {
        slots[i] = {k, rank, merged};
        return true;
      }
    }
  }
  const Slot* find(int32_t a, int32_t b) const {
    const uint64_t k = key_of(a, b);
    for (size_t i = hash(k) & mask;; i = (i + 1) & mask) {
      if (slots[i].key == k) return &slots[i];
      if (slots[i].rank < 0) return nullptr;
    }
  }
};

// Pre-token -> ids cache: open addressing over flat arenas (no per-entry allocation). Starts
// small (stays in cache for small vocabularies of words), doubles up to kMaxSlots, then is
// cleared when full. Not thread-safe by itself: the owner holds cache_mutex_.
struct BPETokenizer::WordCache {
  struct Slot {
    uint32_t hash = 0;  // 0 = empty
    uint32_t key_at = 0, ids_at = 0;
    uint16_t key_len = 0, ids_len = 0;
  };
  static constexpr size_t kMinSlots = size_t{1} << 12, kMaxSlots = size_t{1} << 19;
  std::vector<Slot> slots = std::vector<Slot>(kMinSlots);
  size_t mask = kMinSlots - 1;
  std::string keys;
  std::vector<int32_t> ids;
  size_t used = 0;

  static uint32_t hash_of(std::string_view w) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ w.size();
    size_t i = 0;
    for (; i + 8 <= w.size(); i += 8) {
      uint64_t v;
      std::memcpy(&v, w.data() + i, 8);
      h = (h ^ v) * 0xBF58476D1CE4E5B9ull;
      h ^= h >> 31;
    }
    uint64_t tail = 0;
    std::memcpy(&tail, w.data() + i, w.size() - i);
    h = (h ^ tail) * 0x94D049BB133111EBull;
    h ^= h >> 29;
    return static_cast<uint32_t>(h >> 32) | 1u;
  }
  static bool same(const char* a, const char* b, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      if (a[i] != b[i]) return false;
    }
    return true;
  }
  const Slot* find(std::string_view w, uint32_t h) const {
    for (size_t i = h & mask;; i = (i + 1) & mask) {
      const Slot& s = slots[i];
      if (s.hash == 0) return nullptr;
      if (s.hash == h && s.key_len == w.size() &&
          same(keys.data() + s.key_at, w.data(), w.size())) {
        return &s;
      }
    }
  }
  void place(const Slot& slot) {
    size_t i = slot.hash & mask;
    while (slots[i].hash != 0) i = (i + 1) & mask;
    slots[i] = slot;
  }
  void insert(std::string_view w, uint32_t h, const std::vector<int32_t>& word_ids) {
    if (find(w, h) != nullptr) return;  // another thread computed it meanwhile
    if (used * 2 >= slots.size()) {
      if (slots.size() < kMaxSlots) {  // grow
        std::vector<Slot> old(slots.size() * 2);
        old.swap(slots);
        mask = slots.size() - 1;
        for (const Slot& s : old) {
          if (s.hash != 0) place(s);
        }
      } else {  // full: start over
        std::fill(slots.begin(), slots.end(), Slot{});
        keys.clear();
        ids.clear();
        used = 0;
      }
    }
    place({h, static_cast<uint32_t>(keys.size()), static_cast<uint32_t>(ids.size()),
           static_cast<uint16_t>(w.size()), static_cast<uint16_t>(word_ids.size())});
    keys.append(w);
    ids.insert(ids.end(), word_ids.begin(), word_ids.end());
    ++used;
  }
};

BPETokenizer::BPETokenizer(BPEOptions options)
    : opt_(std::move(options)),
      normalizer_(opt_.normalizer),
      pre_tokenizer_(opt_.pre_tokenizer),
      decoder_(opt_.decoder),
      cache_(std::make_unique<WordCache>()) {
  const std::string& src = opt_.source;
  for (size_t i = 0; i < opt_.pre_tokenizer.size(); ++i) {
    const bool byte_level = opt_.pre_tokenizer[i].kind == PreTokenizerStep::Kind::byte_level;
    LETHE_CHECK(!byte_level || i + 1 == opt_.pre_tokenizer.size(), src,
                ": a ByteLevel pre-tokenizer must be the last one (it maps bytes to the "
                "vocabulary's alphabet)");
  }
  byte_level_ = !opt_.pre_tokenizer.empty() &&
                opt_.pre_tokenizer.back().kind == PreTokenizerStep::Kind::byte_level;

  constexpr int32_t kMaxId = 1 << 24;
  auto set_token = [&](const std::string& token, int32_t id, const char* what) {
    LETHE_CHECK(id >= 0 && id < kMaxId, src, ": ", what, " '", token, "' has id ", id,
                " (ids must be in [0, ", kMaxId, "))");
    LETHE_CHECK(!token.empty(), src, ": ", what, " with id ", id, " is an empty string");
    auto [it, inserted] = token_to_id_.emplace(token, id);
    if (!inserted && it->second != id) {
      LETHE_FAIL(src, ": ", what, " '", token, "' has id ", id, " but also id ", it->second);
    }
    if (static_cast<size_t>(id) >= id_to_token_.size()) id_to_token_.resize(id + 1);
    std::string& slot = id_to_token_[id];
    LETHE_CHECK(slot.empty() || slot == token, src, ": id ", id, " is used by both '", slot,
                "' and '", token, "'");
    slot = token;
  };
  token_to_id_.reserve(opt_.vocab.size() + opt_.added_tokens.size());
  for (const auto& [token, id] : opt_.vocab) {
    check_utf8(token, src + ": vocabulary entry");
    set_token(token, id, "vocabulary entry");
  }
  for (const auto& t : opt_.added_tokens) {
    check_utf8(t.content, src + ": added token");
    set_token(t.content, t.id, "added token");
  }
  is_special_.assign(id_to_token_.size(), 0);
  for (const auto& t : opt_.added_tokens) is_special_[t.id] = t.special ? 1 : 0;

  // Initial symbols: each byte's alphabet character (byte-level models) and the byte-fallback
  // tokens "<0xHH>" (Rust's "<{:#04X}>": upper-case digits after "0x").
  const auto& alphabet = byte_level_alphabet();
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    append_utf8(ch, alphabet[b]);
    auto it = token_to_id_.find(ch);
    byte_symbol_id_[b] = it == token_to_id_.end() ? -1 : it->second;
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    auto fb = token_to_id_.find(std::string_view(name));
    byte_fallback_id_[b] = fb == token_to_id_.end() ? -1 : fb->second;
  }
  if (!opt_.unk_token.empty()) {
    auto it = token_to_id_.find(opt_.unk_token);
    if (it != token_to_id_.end()) unk_id_ = it->second;
  }
  if (decoder_.is_byte_level()) {
    id_bytes_.resize(id_to_token_.size());
    for (size_t id = 0; id < id_to_token_.size(); ++id) {
      id_bytes_[id] = Decoder::byte_level_bytes(id_to_token_[id]);
    }
  }

  merges_ = std::make_unique<MergeTable>(opt_.merges.size());
  for (size_t rank = 0; rank < opt_.merges.size(); ++rank) {
    const auto& [a, b] = opt_.merges[rank];
    auto where = [&] { return opt_.describe_merge ? opt_.describe_merge(rank) : src; };
    auto ia = token_to_id_.find(a), ib = token_to_id_.find(b), im = token_to_id_.find(a + b);
    LETHE_CHECK(ia != token_to_id_.end(), where(), ": merge '", a, " ", b, "': '", a,
                "' is not in the vocabulary");
    LETHE_CHECK(ib != token_to_id_.end(), where(), ": merge '", a, " ", b, "': '", b,
                "' is not in the vocabulary");
    LETHE_CHECK(im != token_to_id_.end(), where(), ": merge '", a, " ", b, "': '", a + b,
                "' is not in the vocabulary");
    merges_->insert(ia->second, ib->second, static_cast<int32_t>(rank), im->second);
  }

  // Words of a character-level model (Metaspace: "▁Hello▁world") may be cut before a "▁" that
  // follows another character when no token contains such a pair: then no merge (whose result
  // is a token) joins across the cut, unknown characters cannot fuse across it ("▁" is a token),
  // and ignore_merges cannot find the uncut word. Checked here, used by encode_word.
  if (!byte_level_) {
    const std::string cut = "\xe2\x96\x81";
    bool safe = token_to_id_.count(cut) > 0;
    for (const auto& [token, id] : token_to_id_) {
      for (size_t pos = token.find(cut, 1); safe && pos != std::string::npos;
           pos = token.find(cut, pos + cut.size())) {
        safe = pos >= cut.size() && token.compare(pos - cut.size(), cut.size(), cut) == 0;
      }
      if (!safe) break;
    }
    if (safe) independent_before_ = cut;
  }

  // Added tokens: those marked `normalized` are looked for in the normalised text, by their
  // normalised form; the others in the raw text first (HF's two passes).
  std::vector<AddedToken> raw, normalized;
  std::vector<std::string> raw_patterns, normalized_patterns;
  for (const auto& t : opt_.added_tokens) {
    if (t.normalized) {
      normalized.push_back(t);
      normalized_patterns.push_back(normalizer_.empty() ? t.content : normalizer_.apply(t.content));
    } else {
      raw.push_back(t);
      raw_patterns.push_back(t.content);
    }
  }
  raw_added_ = AddedTokenMatcher(raw, raw_patterns);
  normalized_added_ = AddedTokenMatcher(normalized, normalized_patterns);

  auto id_of = [&](const std::string& token, const char* role) -> int64_t {
    if (token.empty()) return -1;
    auto it = token_to_id_.find(token);
    LETHE_CHECK(it != token_to_id_.end(), src, ": ", role, " token '", token,
                "' is not in the vocabulary");
    return it->second;
  };
  bos_id_ = id_of(opt_.bos_token, "bos");
  eos_id_ = id_of(opt_.eos_token, "eos");
  pad_id_ = id_of(opt_.pad_token, "pad");
  for (const auto* ids : {&opt_.prefix_ids, &opt_.suffix_ids}) {
    for (int32_t id : *ids) {
      LETHE_CHECK(id >= 0 && id < kMaxId, src, ": post-processor token id ", id,
                  " is out of range");
    }
  }
  // The options' big vectors are no longer needed.
  opt_.vocab = {};
  opt_.merges = {};
  opt_.added_tokens = {};
}

BPETokenizer::~BPETokenizer() = default;

std::optional<int64_t> BPETokenizer::token_to_id(std::string_view token) const {
  auto it = token_to_id_.find(token);
  if (it == token_to_id_.end()) return std::nullopt;
  return it->second;
}

std::string BPETokenizer::id_to_token(int64_t id) const {
  if (id < 0 || id >= vocab_size()) return {};
  return id_to_token_[id];
}

std::vector<int64_t> BPETokenizer::encode(std::string_view text, bool add_special) const {
  check_utf8(text, "tokenizer encode");
  std::vector<int64_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_special) out.insert(out.end(), opt_.prefix_ids.begin(), opt_.prefix_ids.end());
  // HF's order: added tokens split out of the raw text; each stretch between them normalised on
  // its own (so Prepend acts after every added token), then pre-tokenised and merged.
  raw_added_.split(
      text,
      [&](size_t b, size_t e) {
        const std::string_view segment = text.substr(b, e - b);
        if (normalizer_.empty()) {
          encode_normalized(segment, b == 0, out);
        } else {
          encode_normalized(normalizer_.apply(segment), b == 0, out);
        }
      },
      [&](int32_t id) { out.push_back(id); });
  if (add_special) out.insert(out.end(), opt_.suffix_ids.begin(), opt_.suffix_ids.end());
  return out;
}

void BPETokenizer::encode_normalized(std::string_view text, bool at_start,
                                     std::vector<int64_t>& out) const {
  auto encode_words = [&](std::string_view piece, bool piece_at_start) {
    if (independent_before_.empty()) {
      pre_tokenizer_.run(piece, piece_at_start,
                         [&](std::string_view word) { encode_piece(word, out); });
    } else {
      pre_tokenizer_.run(piece, piece_at_start,
                         [&](std::string_view word) { encode_word(word, out); });
    }
  };
  if (normalized_added_.empty()) {
    encode_words(text, at_start);
    return;
  }
  normalized_added_.split(
      text, [&](size_t b, size_t e) { encode_words(text.substr(b, e - b), at_start && b == 0); },
      [&](int32_t id) { out.push_back(id); });
}

void BPETokenizer::encode_word(std::string_view word, std::vector<int64_t>& out) const {
  if (independent_before_.empty()) {
    encode_piece(word, out);
    return;
  }
  // Cut before every "▁" that follows another character: no merge can join across such a cut
  // (see the constructor), so the pieces merge exactly as the whole word would, and are short
  // enough to be cached (a Metaspace word without split is a whole text).
  const std::string& cut = independent_before_;
  size_t begin = 0;
  for (size_t pos = word.find(cut, 1); pos != std::string_view::npos;
       pos = word.find(cut, pos + cut.size())) {
    if (pos >= begin + cut.size() && word.compare(pos - cut.size(), cut.size(), cut) == 0) {
      continue;  // a run of "▁▁": whitespace tokens may join them
    }
    encode_piece(word.substr(begin, pos - begin), out);
    begin = pos;
  }
  encode_piece(word.substr(begin), out);
}

void BPETokenizer::encode_piece(std::string_view word, std::vector<int64_t>& out) const {
  const bool cacheable = word.size() <= kMaxCachedWord;
  uint32_t hash = 0;
  if (cacheable) {
    hash = WordCache::hash_of(word);
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (const auto* hit = cache_->find(word, hash)) {
      const int32_t* p = cache_->ids.data() + hit->ids_at;
      out.insert(out.end(), p, p + hit->ids_len);
      return;
    }
  }
  thread_local std::vector<int32_t> symbols;
  merge_word(word, symbols);
  out.insert(out.end(), symbols.begin(), symbols.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    cache_->insert(word, hash, symbols);
  }
}

// HF's BPE::merge_word before merging: each symbol (a byte's alphabet character, or a character)
// looked up in the vocabulary; a missing one becomes its bytes' <0xHH> tokens (byte_fallback,
// when all exist), else unk (consecutive ones fused with fuse_unk; a pending unk is emitted
// only before the next known symbol, as HF does), else nothing.
void BPETokenizer::initial_symbols(std::string_view word, std::vector<int32_t>& symbols) const {
  symbols.clear();
  symbols.reserve(word.size());
  bool unk_pending = false;
  auto add = [&](int32_t id, std::string_view unit) {
    if (id >= 0) {
      if (unk_pending) symbols.push_back(unk_id_);
      unk_pending = false;
      symbols.push_back(id);
      return;
    }
    if (opt_.byte_fallback && std::all_of(unit.begin(), unit.end(), [&](char c) {
          return byte_fallback_id_[static_cast<uint8_t>(c)] >= 0;
        })) {
      for (char c : unit) symbols.push_back(byte_fallback_id_[static_cast<uint8_t>(c)]);
      return;
    }
    if (unk_id_ >= 0) {
      if (unk_pending && !opt_.fuse_unk) symbols.push_back(unk_id_);
      unk_pending = true;
    }
  };
  if (byte_level_) {
    const auto& alphabet = byte_level_alphabet();
    for (char c : word) {
      const int32_t id = byte_symbol_id_[static_cast<uint8_t>(c)];
      if (id >= 0) {
        add(id, {});
      } else {
        std::string ch;
        append_utf8(ch, alphabet[static_cast<uint8_t>(c)]);
        add(-1, ch);
      }
    }
  } else {
    for (size_t i = 0; i < word.size();) {
      const size_t begin = i;
      next_code_point(word, i);
      const std::string_view ch = word.substr(begin, i - begin);
      auto it = token_to_id_.find(ch);
      add(it == token_to_id_.end() ? -1 : it->second, ch);
    }
  }
  if (unk_pending) symbols.push_back(unk_id_);
}

void BPETokenizer::merge_word(std::string_view word, std::vector<int32_t>& symbols) const {
  if (opt_.ignore_merges) {
    std::string mapped;
    if (byte_level_) {
      const auto& alphabet = byte_level_alphabet();
      for (char c : word) append_utf8(mapped, alphabet[static_cast<uint8_t>(c)]);
    }
    auto it = token_to_id_.find(byte_level_ ? std::string_view(mapped) : word);
    if (it != token_to_id_.end()) {
      symbols.assign(1, it->second);
      return;
    }
  }
  initial_symbols(word, symbols);
  const size_t n = symbols.size();
  if (n < 2) return;

  if (n <= opt_.linear_merge_max) {
    // Short words: repeatedly merge the lowest-ranked adjacent pair, leftmost first.
    size_t len = n;
    while (true) {
      int32_t best_rank = INT32_MAX, best_merged = -1;
      size_t best = 0;
      for (size_t i = 0; i + 1 < len; ++i) {
        const auto* m = merges_->find(symbols[i], symbols[i + 1]);
        if (m != nullptr && m->rank < best_rank) {
          best_rank = m->rank;
          best_merged = m->merged;
          best = i;
        }
      }
      if (best_merged < 0) break;
      symbols[best] = best_merged;
      std::memmove(&symbols[best + 1], &symbols[best + 2], (len - best - 2) * sizeof(int32_t));
      --len;
    }
    symbols.resize(len);
    return;
  }

  // Long words: a doubly linked list of symbols and a heap of candidate merges keyed by
  // (rank, position); stale candidates are skipped when popped. O(n log n), same order as above.
  std::vector<int32_t> prev(n), next(n);
  for (size_t i = 0; i < n; ++i) {
    prev[i] = static_cast<int32_t>(i) - 1;
    next[i] = i + 1 < n ? static_cast<int32_t>(i + 1) : -1;
  }
  struct Candidate {
    int32_t rank, pos, merged;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  auto push = [&](int32_t pos) {
    if (pos < 0 || next[pos] < 0) return;
    if (const auto* m = merges_->find(symbols[pos], symbols[next[pos]])) {
      heap.push({m->rank, pos, m->merged});
    }
  };
  for (size_t i = 0; i + 1 < n; ++i) push(static_cast<int32_t>(i));
  std::vector<uint8_t> alive(n, 1);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    if (!alive[c.pos] || next[c.pos] < 0) continue;
    const auto* m = merges_->find(symbols[c.pos], symbols[next[c.pos]]);
    if (m == nullptr || m->rank != c.rank) continue;  // the pair changed since it was pushed
    const int32_t right = next[c.pos];
    symbols[c.pos] = c.merged;
    alive[right] = 0;
    next[c.pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = c.pos;
    push(prev[c.pos]);
    push(c.pos);
  }
  size_t len = 0;
  for (int32_t i = 0; i >= 0; i = next[i]) symbols[len++] = symbols[i];
  symbols.resize(len);
}

std::string BPETokenizer::decode(const std::vector<int64_t>& ids, bool skip_special) const {
  auto keep = [&](int64_t id) {  // HF skips ids without a token
    return id >= 0 && id < vocab_size() && !id_to_token_[id].empty() &&
           !(skip_special && is_special_[id]);
  };
  if (decoder_.is_byte_level()) {
    std::string bytes;
    for (int64_t id : ids) {
      if (keep(id)) bytes += id_bytes_[id];
    }
    return utf8_lossy(bytes);
  }
  std::vector<std::string_view> tokens;
  tokens.reserve(ids.size());
  for (int64_t id : ids) {
    if (keep(id)) tokens.push_back(id_to_token_[id]);
  }
  return decoder_.decode(tokens);
}

}  // namespace lethe::tokenizer
