// See json_lines.h.
#include "trainers/data/json_lines.h"

#include <string_view>

#include "engine/error.h"
#include "engine/io/file_util.h"
#include "engine/io/json.h"

namespace lethe::trainers::data {

namespace {

bool is_json_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

// parse_json names positions as "line L, column C"; inside one line of a JSON Lines file the
// line is always 1, so say only the column ("f.jsonl:3: invalid JSON at column 5 ...").
nlohmann::json parse_line(std::string_view text, const std::string& source) {
  try {
    return io::parse_json(text, source);
  } catch (const Error& e) {
    std::string what = e.what();
    const std::string from = source + ": invalid JSON at line 1, column ";
    if (what.rfind(from, 0) == 0)
      throw Error(source + ": invalid JSON at column " + what.substr(from.size()));
    throw;
  }
}

void require_object(const nlohmann::json& value, const std::string& source) {
  LETHE_CHECK(value.is_object(), source, ": expected a JSON object, got ", describe_json(value));
}

}  // namespace

std::string describe_json(const nlohmann::json& value) {
  if (value.is_null()) return "null";
  return std::string(value.type_name()) + " " + io::json_excerpt(value, 60);
}

size_t for_each_json_object(
    const std::string& path,
    const std::function<void(const nlohmann::json& object, const std::string& source)>& on_object) {
  const std::string data = io::read_text_file(path);
  std::string_view text(data);
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);  // UTF-8 byte-order mark

  size_t first = 0;
  while (first < text.size() && is_json_space(text[first])) ++first;
  LETHE_CHECK(first < text.size(), path, ": empty file (no JSON object)");

  size_t count = 0;
  if (text[first] == '[') {
    // One JSON array of objects (e.g. a data set saved with to_json(orient="records")).
    const nlohmann::json array = io::parse_json(text, path);
    LETHE_CHECK(!array.empty(), path, ": empty JSON array (no record)");
    for (const auto& value : array) {
      const std::string source = path + "[" + std::to_string(count) + "]";
      require_object(value, source);
      on_object(value, source);
      ++count;
    }
    return count;
  }

  size_t line = 0;
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string_view::npos) end = text.size();
    ++line;
    const std::string_view row = text.substr(begin, end - begin);
    begin = end + 1;
    bool blank = true;
    for (char c : row) blank = blank && is_json_space(c);
    if (blank) continue;
    const std::string source = path + ":" + std::to_string(line);
    const nlohmann::json value = parse_line(row, source);
    require_object(value, source);
    on_object(value, source);
    ++count;
  }
  return count;
}

}  // namespace lethe::trainers::data
