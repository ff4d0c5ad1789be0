// Decoder: HF tokenizers' decoders (ByteLevel, and the SentencePiece-style chain Replace,
// ByteFallback, Fuse, Strip, Metaspace) turning token strings back into text. Parsing them from
// JSON is tokenizer_json.cpp's job.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lethe::tokenizer {

// GPT-2's bytes_to_unicode (HF's ByteLevel alphabet): the code point standing for each byte in
// byte-level vocabularies (bytes 33-126, 161-172, 174-255 themselves, the other 68 U+0100 on).
const std::array<uint32_t, 256>& byte_level_alphabet();

struct DecoderStep {
  enum class Kind { byte_level, replace, byte_fallback, fuse, strip, metaspace };
  Kind kind = Kind::byte_level;
  std::string text;            // replace: the literal replaced; strip: the character stripped;
                               // metaspace: the replacement character
  std::string replacement;     // replace: what replaces it
  size_t start = 0, stop = 0;  // strip: at most this many characters from the start / the end
  bool prepend_never = false;  // metaspace: its prepend_scheme is "never"

  static DecoderStep of(Kind kind) { return {kind, {}, {}, 0, 0, false}; }
  static DecoderStep replace(std::string from, std::string to) {
    return {Kind::replace, std::move(from), std::move(to), 0, 0, false};
  }
  static DecoderStep strip(std::string ch, size_t start, size_t stop) {
    return {Kind::strip, std::move(ch), {}, start, stop, false};
  }
  static DecoderStep metaspace(std::string replacement, bool prepend_never) {
    return {Kind::metaspace, std::move(replacement), {}, 0, 0, prepend_never};
  }
};

class Decoder {
 public:
  // No steps: HF's behaviour without a decoder (the tokens joined by spaces).
  explicit Decoder(std::vector<DecoderStep> steps = {});

  // True when the decoder is exactly ByteLevel: then each token's bytes can be computed once
  // (byte_level_bytes) and the text is their concatenation through utf8_lossy.
  bool is_byte_level() const;

  // The text of `tokens` (the vocabulary strings of the ids being decoded). Always valid UTF-8.
  std::string decode(const std::vector<std::string_view>& tokens) const;

  // HF's ByteLevel decoding of one token: its characters mapped back to bytes through GPT-2's
  // table; a token with a character outside the table is its own UTF-8 unchanged.
  static std::string byte_level_bytes(std::string_view token);

 private:
  std::vector<DecoderStep> steps_;
};

}  // namespace lethe::tokenizer
