// Data files of JSON objects: JSON Lines (one object per line) or one JSON array of objects, read
// object by object, with a "<file>:<line>" name for each. Knows no field names.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

namespace lethe::trainers::data {

// Calls `on_object(object, source)` for every object of the file at `path`, in file order, and
// returns how many there were. The file is JSON Lines (blank lines skipped; `source` is
// "<path>:<line>") unless its first non-blank character is '[': then it is one JSON array of
// objects (`source` is "<path>[<index>]", 0-based). A UTF-8 byte-order mark is skipped. The file
// is read with io::read_text_file (regular files only, at most io::kMaxTextFileBytes) and every
// line or array with io::parse_json (at most io::kMaxJsonBytes). Errors name the file and line:
// invalid JSON (with the parser's message), a value that is not an object, a file with no object.
size_t for_each_json_object(
    const std::string& path,
    const std::function<void(const nlohmann::json& object, const std::string& source)>& on_object);

// A JSON value for error messages: `number 5`, `string "abc"`, `array [1,2]`, `null`.
std::string describe_json(const nlohmann::json& value);

}  // namespace lethe::trainers::data
