// JSON file helpers for lethe::io: strict reading (errors name the file, line and byte; duplicate
// keys rejected) and atomic writing (temp file + rename). Must not know about tensors or models.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace lethe::io {

// Deepest nesting parse_json accepts; deeper input is an error (it would otherwise make the
// recursive serialiser overflow the stack when a value is printed or saved).
constexpr int kMaxJsonDepth = 256;
// Largest JSON text parse_json accepts (a parsed value takes several times its text in memory).
// The largest JSON files lethe reads are tokenizer.json files of a few tens of MB.
constexpr size_t kMaxJsonBytes = size_t{256} << 20;

// Parses `text` as one JSON value. `source` names where it came from (a path) for messages.
// Errors (lethe::Error): syntax errors and invalid UTF-8 ("<source>: invalid JSON at line L,
// column C (byte B): ..."), and duplicate keys in any object ("<source>: duplicate key 'k'"),
// which nlohmann would otherwise silently collapse, nesting deeper than kMaxJsonDepth and text
// longer than kMaxJsonBytes. This is the one JSON reader of the project: every JSON file and
// JSON line goes through it.
nlohmann::json parse_json(std::string_view text, const std::string& source);

// Reads and parses a whole JSON file; errors name `path`.
nlohmann::json read_json_file(const std::string& path);

// Writes `value` (pretty-printed with `indent`, trailing newline) to `path` + ".tmp", flushes it
// and renames it over `path`, so an existing file is never left half-written.
void write_json_file(const std::string& path, const nlohmann::json& value, int indent = 2);
void write_json_file(const std::string& path, const nlohmann::ordered_json& value, int indent = 2);

// A value's JSON text for error messages, cut to about `max_chars`.
std::string json_excerpt(const nlohmann::json& value, size_t max_chars = 80);

// 1-based line and column of byte offset `byte` in `text` (for error messages).
struct TextPosition {
  size_t line = 1;
  size_t column = 1;
};
TextPosition position_of(std::string_view text, size_t byte);

}  // namespace lethe::io
