// See json.h.
#include "engine/io/json.h"

#include <unordered_set>
#include <vector>

#include "engine/error.h"
#include "engine/io/file_util.h"

namespace lethe::io {

TextPosition position_of(std::string_view text, size_t byte) {
  TextPosition pos;
  size_t end = byte < text.size() ? byte : text.size();
  for (size_t i = 0; i < end; ++i) {
    if (text[i] == '\n') {
      ++pos.line;
      pos.column = 1;
    } else {
      ++pos.column;
    }
  }
  return pos;
}

nlohmann::json parse_json(std::string_view text, const std::string& source) {
  LETHE_CHECK(text.size() <= kMaxJsonBytes, source, ": JSON text is ", text.size(),
              " bytes, more than the ", kMaxJsonBytes, " lethe reads");
  // nlohmann keeps the last of duplicate keys without a word; a parser callback sees every key,
  // so we track the keys of each open object and remember the first repeat.
  std::vector<std::unordered_set<std::string>> open_objects;
  std::string duplicate;
  auto callback = [&](int depth, nlohmann::json::parse_event_t event,
                      nlohmann::json& parsed) -> bool {
    using E = nlohmann::json::parse_event_t;
    if (depth > kMaxJsonDepth)
      LETHE_FAIL(source, ": JSON nested deeper than ", kMaxJsonDepth, " levels");
    switch (event) {
      case E::object_start: open_objects.emplace_back(); break;
      case E::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        break;
      case E::key:
        if (!open_objects.empty() && parsed.is_string()) {
          const auto& key = parsed.get_ref<const std::string&>();
          if (!open_objects.back().insert(key).second && duplicate.empty()) duplicate = key;
        }
        break;
      default: break;
    }
    return true;
  };
  nlohmann::json value;
  try {
    value = nlohmann::json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/true,
                                  /*ignore_comments=*/false);
  } catch (const nlohmann::json::parse_error& e) {
    // e.byte is 1-based and points just past the offending character.
    size_t byte = e.byte > 0 ? e.byte - 1 : 0;
    TextPosition pos = position_of(text, byte);
    std::string what = e.what();
    // Drop nlohmann's "[json.exception.parse_error.101] parse error at line 1, column 2: " prefix.
    auto colon = what.find(": ");
    if (colon != std::string::npos) what = what.substr(colon + 2);
    LETHE_FAIL(source, ": invalid JSON at line ", pos.line, ", column ", pos.column, " (byte ",
               byte, "): ", what);
  } catch (const nlohmann::json::exception& e) {
    LETHE_FAIL(source, ": invalid JSON: ", e.what());
  }
  LETHE_CHECK(duplicate.empty(), source, ": duplicate key '", duplicate, "' in a JSON object");
  return value;
}

std::string json_excerpt(const nlohmann::json& value, size_t max_chars) {
  std::string text = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (text.size() > max_chars) text = text.substr(0, max_chars) + "...";
  return text;
}

nlohmann::json read_json_file(const std::string& path) {
  return parse_json(read_text_file(path, kMaxJsonBytes), path);
}

namespace {
template <typename Json>
void write_any_json(const std::string& path, const Json& value, int indent) {
  std::string text;
  try {
    text = value.dump(indent) + "\n";
  } catch (const nlohmann::json::exception& e) {  // e.g. a string that is not valid UTF-8
    LETHE_FAIL(path, ": cannot serialise JSON: ", e.what());
  }
  write_file_atomic(path, text);
}
}  // namespace

void write_json_file(const std::string& path, const nlohmann::json& value, int indent) {
  write_any_json(path, value, indent);
}

void write_json_file(const std::string& path, const nlohmann::ordered_json& value, int indent) {
  write_any_json(path, value, indent);
}

}  // namespace lethe::io
