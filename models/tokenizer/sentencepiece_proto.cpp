#include "models/tokenizer/sentencepiece_proto.h"

#include <cstdint>
#include <functional>
#include <set>
#include <unordered_map>

#include "engine/error.h"
#include "models/tokenizer/utf8.h"

namespace lethe::tokenizer {
namespace {

// Protobuf wire format, just enough to walk messages: each field is a varint key (number << 3 |
// wire type) followed by a varint (0), 8 bytes (1), a length-prefixed payload (2) or 4 bytes (5).
class WireReader {
 public:
  WireReader(std::string_view bytes, const std::string& where) : s_(bytes), where_(where) {}
  bool done() const { return pos_ >= s_.size(); }

  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      LETHE_CHECK(pos_ < s_.size(), where_, ": truncated protobuf varint at byte ", pos_);
      const auto b = static_cast<uint8_t>(s_[pos_++]);
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    LETHE_FAIL(where_, ": protobuf varint longer than 10 bytes at byte ", pos_);
  }

  // Reads one field's key and value; `payload` is set for length-delimited fields.
  void field(uint32_t& number, uint32_t& wire_type, uint64_t& value, std::string_view& payload) {
    const uint64_t key = varint();
    number = static_cast<uint32_t>(key >> 3);
    wire_type = static_cast<uint32_t>(key & 7);
    switch (wire_type) {
      case 0: value = varint(); return;
      case 1: skip(8); return;
      case 2: {
        const uint64_t n = varint();
        LETHE_CHECK(n <= s_.size() - pos_, where_, ": protobuf field ", number, " says ", n,
                    " bytes at byte ", pos_, " but only ", s_.size() - pos_, " are left");
        payload = s_.substr(pos_, n);
        pos_ += n;
        return;
      }
      case 5: skip(4); return;
      default:
        LETHE_FAIL(where_, ": protobuf field ", number, " has unsupported wire type ", wire_type,
                   " at byte ", pos_);
    }
  }

 private:
  void skip(size_t n) {
    LETHE_CHECK(n <= s_.size() - pos_, where_, ": truncated protobuf field at byte ", pos_);
    pos_ += n;
  }
  std::string_view s_;
  const std::string& where_;
  size_t pos_ = 0;
};

}  // namespace

std::vector<SentencePiecePiece> read_sentencepiece_pieces(std::string_view bytes,
                                                          const std::string& where) {
  std::vector<SentencePiecePiece> pieces;
  WireReader model(bytes, where);
  while (!model.done()) {
    uint32_t number = 0, wire = 0;
    uint64_t value = 0;
    std::string_view payload;
    model.field(number, wire, value, payload);
    if (number != 1 || wire != 2) continue;  // ModelProto.pieces = 1; the specs are skipped
    SentencePiecePiece p;
    WireReader piece(payload, where);
    while (!piece.done()) {
      uint32_t n = 0, w = 0;
      uint64_t v = 0;
      std::string_view text;
      piece.field(n, w, v, text);
      if (n == 1 && w == 2) {
        p.piece = std::string(text);
      } else if (n == 3 && w == 0) {
        LETHE_CHECK(v >= 1 && v <= 6, where, ": piece ", pieces.size(), " has type ", v,
                    " (1..6 expected)");
        p.type = static_cast<SentencePiecePiece::Type>(v);
      }
    }
    check_utf8(p.piece, where + ": piece " + std::to_string(pieces.size()));
    pieces.push_back(std::move(p));
  }
  LETHE_CHECK(!pieces.empty(), where, ": SentencePiece model has no pieces");
  return pieces;
}

BPEOptions sentencepiece_bpe_options(const std::vector<SentencePiecePiece>& pieces,
                                     const std::string& where) {
  using Type = SentencePiecePiece::Type;
  BPEOptions o;
  o.source = where;
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view v) const { return std::hash<std::string_view>{}(v); }
  };
  std::unordered_map<std::string, int32_t, Hash, std::equal_to<>> id_of;
  std::set<size_t> lengths;  // byte lengths of the pieces
  for (size_t i = 0; i < pieces.size(); ++i) {
    const auto& p = pieces[i];
    LETHE_CHECK(!p.piece.empty(), where, ": piece ", i, " is empty");
    LETHE_CHECK(id_of.emplace(p.piece, static_cast<int32_t>(i)).second, where, ": piece ", i, " '",
                p.piece, "' repeats piece ", id_of[p.piece]);
    o.vocab.emplace_back(p.piece, static_cast<int32_t>(i));
    lengths.insert(p.piece.size());
    if (p.type == Type::control || p.type == Type::user_defined) {
      AddedToken t;
      t.content = p.piece;
      t.id = static_cast<int32_t>(i);
      t.special = p.type == Type::control;
      t.normalized = false;
      o.added_tokens.push_back(std::move(t));
    }
  }
  // transformers' generate_merges(vocab): merges sorted by (id of the merged piece, length of
  // the left part in characters). Only splits whose two parts have lengths some piece has can be
  // merges, which keeps a long piece from costing quadratic time.
  for (const auto& p : pieces) {
    const std::string_view whole = p.piece;
    for (size_t n : lengths) {
      if (n >= whole.size()) break;
      if (!lengths.count(whole.size() - n) || (static_cast<uint8_t>(whole[n]) & 0xC0) == 0x80) {
        continue;  // no piece that long on the right, or not a character boundary
      }
      const std::string_view left = whole.substr(0, n), right = whole.substr(n);
      if (id_of.find(left) != id_of.end() && id_of.find(right) != id_of.end()) {
        o.merges.emplace_back(std::string(left), std::string(right));
      }
    }
  }
  o.describe_merge = [where](size_t rank) {
    return where + ": merge " + std::to_string(rank) + " derived from the pieces";
  };
  return o;
}

}  // namespace lethe::tokenizer
