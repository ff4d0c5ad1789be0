// UTF-8 helpers for the tokenizers: strict validation and Python-compatible lossy decoding.
// Byte-level only; knows nothing about tokens or vocabularies.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace lethe::tokenizer {

// Offset of the first byte that starts an invalid UTF-8 sequence (overlong forms, surrogates,
// code points above U+10FFFF and truncated sequences are invalid), or nullopt if `s` is valid.
std::optional<size_t> find_invalid_utf8(std::string_view s);

// Throws lethe::Error("<what>: ... not valid UTF-8 at byte offset N") when `s` is invalid.
void check_utf8(std::string_view s, std::string_view what);

// Decodes bytes as Python's bytes.decode('utf-8', errors='replace') (and Rust's
// String::from_utf8_lossy) do: each maximal invalid subpart becomes one U+FFFD.
std::string utf8_lossy(std::string_view bytes);

// Appends the UTF-8 encoding of code point `cp` (< 0x110000) to `out`.
void append_utf8(std::string& out, uint32_t cp);

// Unicode White_Space property (what Rust's char::is_whitespace and Oniguruma's \s test).
bool is_unicode_whitespace(uint32_t cp);

// Decodes the code point starting at s[i] (s must be valid UTF-8) and advances i past it.
uint32_t next_code_point(std::string_view s, size_t& i);

}  // namespace lethe::tokenizer
