#include "models/tokenizer/bpe.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstring>
#include <queue>

#include "engine/error.h"
#include "models/tokenizer/utf8.h"

namespace lethe::tokenizer {
namespace {

// GPT-2's pre-tokenising pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// HF tokenizers runs it with Oniguruma, whose \s is the Unicode White_Space property; PCRE2's \s
// under UCP also matches U+180E, so \s and \S are spelled out as that class here.
std::string gpt2_pattern() {
  const std::string ws =
      "\\t-\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}"
      "\\x{3000}";
  return "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" + ws + "\\p{L}\\p{N}]+|[" + ws +
         "]+(?![^" + ws + "])|[" + ws + "]+";
}

// GPT-2's bytes_to_unicode: printable bytes map to themselves, the other 68 to U+0100 onward.
std::array<uint32_t, 256> byte_to_code_point() {
  std::array<uint32_t, 256> table{};
  uint32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    table[b] = printable ? static_cast<uint32_t>(b) : next++;
  }
  return table;
}

}  // namespace

// PCRE2 pattern, compiled once; match data and JIT stack are per thread.
struct ByteLevelBPE::Regex {
  pcre2_code* code = nullptr;
  bool jit = false;

  Regex() {
    int err = 0;
    PCRE2_SIZE off = 0;
    const std::string pattern = gpt2_pattern();
    code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                         PCRE2_UTF | PCRE2_UCP, &err, &off, nullptr);
    if (code == nullptr) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof(msg));
      LETHE_FAIL("tokenizer: PCRE2 cannot compile the GPT-2 pattern at offset ", off, ": ",
                 reinterpret_cast<const char*>(msg));
    }
    jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  }
  ~Regex() { pcre2_code_free(code); }

  struct PerThread {
    pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
    pcre2_match_context* context = pcre2_match_context_create(nullptr);
    pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
    PerThread() { pcre2_jit_stack_assign(context, nullptr, stack); }
    ~PerThread() {
      pcre2_jit_stack_free(stack);
      pcre2_match_context_free(context);
      pcre2_match_data_free(data);
    }
  };

  // Calls piece(begin, end) for each pre-token of s (s is valid UTF-8), covering all of s.
  template <typename F>
  void split(std::string_view s, F&& piece) const {
    thread_local PerThread local;
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(s.data());
    size_t start = 0;
    while (start < s.size()) {
      const int rc =
          jit ? pcre2_jit_match(code, subject, s.size(), start, 0, local.data, local.context)
              : pcre2_match(code, subject, s.size(), start, PCRE2_NO_UTF_CHECK, local.data,
                            local.context);
      if (rc == PCRE2_ERROR_NOMATCH) {
        piece(start, s.size());
        return;
      }
      if (rc < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof(msg));
        LETHE_FAIL("tokenizer: pre-tokenising regex failed at byte ", start, ": ",
                   reinterpret_cast<const char*>(msg));
      }
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(local.data);
      size_t b = ov[0], e = ov[1];
      if (b > start) piece(start, b);  // unmatched gap (the pattern covers all text; defensive)
      if (e == b) {                    // empty match (cannot happen either): take one character
        next_code_point(s, e);
      }
      piece(b, e);
      start = e;
    }
  }
};

// (left id, right id) -> (rank, merged id), open addressing; the hot lookup of merge_word.
struct ByteLevelBPE::MergeTable {
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
struct ByteLevelBPE::WordCache {
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

ByteLevelBPE::ByteLevelBPE(ByteLevelBPEOptions options)
    : opt_(std::move(options)), cache_(std::make_unique<WordCache>()) {
  const std::string& src = opt_.source;
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
  for (const auto& t : opt_.added_tokens) set_token(t.content, t.id, "added token");
  is_special_.assign(id_to_token_.size(), 0);
  for (const auto& t : opt_.added_tokens) is_special_[t.id] = t.special ? 1 : 0;

  // Byte table: initial symbols for encoding, byte values for decoding.
  const auto b2cp = byte_to_code_point();
  std::array<int, 512> cp2byte;
  cp2byte.fill(-1);
  for (int b = 0; b < 256; ++b) {
    cp2byte[b2cp[b]] = b;
    std::string ch;
    append_utf8(ch, b2cp[b]);
    auto it = token_to_id_.find(ch);
    byte_id_[b] = it == token_to_id_.end() ? -1 : it->second;
  }
  if (!opt_.unk_token.empty()) {
    auto it = token_to_id_.find(opt_.unk_token);
    if (it != token_to_id_.end()) unk_id_ = it->second;
  }
  // Decoding (HF's ByteLevel decoder): a token whose characters are all in the byte table
  // becomes those bytes; any other token (e.g. an added "日本") stays its own UTF-8.
  id_bytes_.resize(id_to_token_.size());
  for (size_t id = 0; id < id_to_token_.size(); ++id) {
    const std::string& tok = id_to_token_[id];
    std::string bytes;
    bool all_mapped = true;
    for (size_t i = 0; i < tok.size() && all_mapped;) {
      const uint32_t cp = next_code_point(tok, i);
      if (cp < cp2byte.size() && cp2byte[cp] >= 0) {
        bytes.push_back(static_cast<char>(cp2byte[cp]));
      } else {
        all_mapped = false;
      }
    }
    id_bytes_[id] = all_mapped ? std::move(bytes) : tok;
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

  added_ = opt_.added_tokens;
  std::sort(added_.begin(), added_.end(), [](const AddedToken& x, const AddedToken& y) {
    return x.content.size() > y.content.size();
  });
  added_first_byte_.assign(256, 0);
  for (const auto& t : added_) added_first_byte_[static_cast<uint8_t>(t.content[0])] = 1;

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
  add_bos_ = opt_.add_bos && bos_id_ >= 0;
  if (opt_.use_regex) regex_ = std::make_unique<Regex>();
  // The options' big vectors are no longer needed.
  opt_.vocab = {};
  opt_.merges = {};
  opt_.added_tokens = {};
}

ByteLevelBPE::~ByteLevelBPE() = default;

std::optional<int64_t> ByteLevelBPE::token_to_id(std::string_view token) const {
  auto it = token_to_id_.find(token);
  if (it == token_to_id_.end()) return std::nullopt;
  return it->second;
}

std::string ByteLevelBPE::id_to_token(int64_t id) const {
  if (id < 0 || id >= vocab_size()) return {};
  return id_to_token_[id];
}

// Longest added token starting at text[at] (leftmost-longest, as HF's Aho-Corasick matcher).
const AddedToken* ByteLevelBPE::match_added(std::string_view text, size_t at) const {
  const std::string_view rest = text.substr(at);
  for (const auto& t : added_) {
    if (rest.size() >= t.content.size() && rest.compare(0, t.content.size(), t.content) == 0) {
      return &t;
    }
  }
  return nullptr;
}

std::vector<int64_t> ByteLevelBPE::encode(std::string_view text, bool add_bos) const {
  check_utf8(text, "tokenizer encode");
  std::vector<int64_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_bos && add_bos_) out.push_back(bos_id_);
  // Split added tokens out first; the text between them is pre-tokenised piece by piece.
  size_t segment = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if (!added_first_byte_[static_cast<uint8_t>(text[i])]) continue;
    const AddedToken* t = match_added(text, i);
    if (t == nullptr) continue;
    size_t begin = i, end = i + t->content.size();
    if (t->lstrip) {  // step back over whole whitespace characters
      while (begin > segment) {
        size_t p = begin - 1;
        while (p > segment && (static_cast<uint8_t>(text[p]) & 0xC0) == 0x80) --p;
        size_t q = p;
        if (!is_unicode_whitespace(next_code_point(text, q))) break;
        begin = p;
      }
    }
    if (t->rstrip) {
      while (end < text.size()) {
        size_t q = end;
        if (!is_unicode_whitespace(next_code_point(text, q))) break;
        end = q;
      }
    }
    if (begin > segment) encode_segment(text.substr(segment, begin - segment), out);
    out.push_back(t->id);
    segment = end;
    i = end - 1;
  }
  if (segment < text.size()) encode_segment(text.substr(segment), out);
  return out;
}

void ByteLevelBPE::encode_segment(std::string_view segment, std::vector<int64_t>& out) const {
  std::string prefixed;
  if (opt_.add_prefix_space && segment.front() != ' ') {
    prefixed.reserve(segment.size() + 1);
    prefixed.push_back(' ');
    prefixed.append(segment);
    segment = prefixed;
  }
  if (!regex_) {
    encode_word(segment, out);
    return;
  }
  regex_->split(segment, [&](size_t b, size_t e) { encode_word(segment.substr(b, e - b), out); });
}

void ByteLevelBPE::encode_word(std::string_view word, std::vector<int64_t>& out) const {
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

void ByteLevelBPE::merge_word(std::string_view word, std::vector<int32_t>& symbols) const {
  if (opt_.ignore_merges) {
    static const auto b2cp = byte_to_code_point();
    std::string mapped;
    for (char c : word) append_utf8(mapped, b2cp[static_cast<uint8_t>(c)]);
    auto it = token_to_id_.find(mapped);
    if (it != token_to_id_.end()) {
      symbols.assign(1, it->second);
      return;
    }
  }
  symbols.clear();
  symbols.reserve(word.size());
  for (char c : word) {
    const int32_t id = byte_id_[static_cast<uint8_t>(c)];
    if (id >= 0) {
      symbols.push_back(id);
    } else if (unk_id_ >= 0) {
      symbols.push_back(unk_id_);  // a vocabulary without this byte; HF emits unk (or drops it)
    }
  }
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

std::string ByteLevelBPE::decode(const std::vector<int64_t>& ids, bool skip_special) const {
  std::string bytes;
  for (int64_t id : ids) {
    if (id < 0 || id >= vocab_size() || id_to_token_[id].empty()) continue;  // HF skips these
    if (skip_special && is_special_[id]) continue;
    bytes += id_bytes_[id];
  }
  return utf8_lossy(bytes);
}

}  // namespace lethe::tokenizer
