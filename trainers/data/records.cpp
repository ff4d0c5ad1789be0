// Text data sets -> Records: TOFU, PKU-SafeRLHF, MUSE and plain JSONL (JSON objects, through
// json_lines.h) and TruthfulQA (CSV, through csv.h). Field names and types are checked here;
// templates and tokens are samples.cpp's business.
#include <algorithm>
#include <cctype>
#include <initializer_list>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "engine/error.h"
#include "engine/io/file_util.h"
#include "models/tokenizer/utf8.h"
#include "trainers/data/csv.h"
#include "trainers/data/dataset.h"
#include "trainers/data/json_lines.h"

namespace lethe::trainers::data {

namespace {

using nlohmann::json;

constexpr Format kFormats[] = {Format::tofu, Format::pku,   Format::truthfulqa,
                               Format::muse, Format::jsonl, Format::tokenized};

// " (the record has "a", "b", ...)" for a missing-field message.
std::string keys_note(const json& object) {
  if (object.empty()) return " (the record is {})";
  std::string out = " (the record has";
  size_t shown = 0;
  for (const auto& item : object.items()) {
    if (shown == 8) {
      out += ", ...";
      break;
    }
    out += (shown++ ? ", \"" : " \"") + item.key() + "\"";
  }
  return out + ")";
}

std::string field_prefix(const std::string& source, const std::string& key) {
  return source + ": field \"" + key + "\": ";
}

const std::string& as_string(const json& value, const std::string& source, const std::string& key) {
  LETHE_CHECK(value.is_string(), field_prefix(source, key), "expected a string, got ",
              describe_json(value));
  return value.get_ref<const std::string&>();
}

std::vector<std::string> as_string_list(const json& value, const std::string& source,
                                        const std::string& key) {
  LETHE_CHECK(value.is_array(), field_prefix(source, key), "expected a list of strings, got ",
              describe_json(value));
  std::vector<std::string> out;
  out.reserve(value.size());
  for (size_t i = 0; i < value.size(); ++i) {
    LETHE_CHECK(value[i].is_string(), field_prefix(source, key), "element ", i,
                ": expected a string, got ", describe_json(value[i]));
    out.push_back(value[i].get<std::string>());
  }
  return out;
}

const json& require(const json& object, const std::string& key, const std::string& source) {
  const auto it = object.find(key);
  LETHE_CHECK(it != object.end(), field_prefix(source, key), "missing", keys_note(object));
  return *it;
}

bool is_string_list(const json& value) {
  return value.is_array() &&
         std::all_of(value.begin(), value.end(), [](const json& v) { return v.is_string(); });
}

// Fields a format knows: read with their type checked (null = absent). Every other field that
// is a string or a list of strings is kept as it is; other values are skipped.
struct KnownField {
  const char* key;
  bool list;
};

Record read_fields(const json& object, const std::string& source,
                   const std::vector<KnownField>& known) {
  Record r;
  r.source = source;
  for (const auto& item : object.items()) {
    const std::string& key = item.key();
    const json& value = item.value();
    const auto k =
        std::find_if(known.begin(), known.end(), [&](const KnownField& f) { return key == f.key; });
    if (k != known.end()) {
      if (value.is_null()) continue;
      if (k->list)
        r.lists[key] = as_string_list(value, source, key);
      else
        r.fields[key] = as_string(value, source, key);
    } else if (value.is_string()) {
      r.fields[key] = value.get<std::string>();
    } else if (is_string_list(value)) {
      r.lists[key] = value.get<std::vector<std::string>>();
    }
  }
  return r;
}

bool has(const Record& r, const std::string& key) {
  return r.fields.count(key) != 0;
}

Record tofu_record(const json& object, const std::string& source) {
  for (const char* key : {"question", "answer"})
    as_string(require(object, key, source), source, key);
  return read_fields(object, source,
                     {{"question", false},
                      {"answer", false},
                      {"paraphrased_answer", false},
                      {"paraphrased_question", false},
                      {"perturbed_answer", true},
                      {"option1", false},
                      {"option2", false},
                      {"option3", false},
                      {"option4", false}});
}

// MUSE and plain JSONL: a question/answer pair under one of `pairs` of names (mapped to
// "question" and "answer"), or a "text".
Record qa_or_text_record(const json& object, const std::string& source,
                         std::initializer_list<std::pair<const char*, const char*>> pairs) {
  std::vector<KnownField> known{{"text", false}};
  for (const auto& [q, a] : pairs) {
    known.push_back({q, false});
    known.push_back({a, false});
  }
  Record r = read_fields(object, source, known);
  const std::pair<const char*, const char*>* found = nullptr;
  for (const auto& pair : pairs) {
    const bool q = has(r, pair.first), a = has(r, pair.second);
    if (!q && !a) continue;
    if (!q || !a) {
      const char* missing = q ? pair.second : pair.first;
      LETHE_FAIL(field_prefix(source, missing), "missing: \"", pair.first, "\" and \"", pair.second,
                 "\" go together", keys_note(object));
    }
    LETHE_CHECK(found == nullptr, source, ": both \"", found->first, "\"/\"", found->second,
                "\" and \"", pair.first, "\"/\"", pair.second,
                "\": a record holds one question/answer pair");
    found = &pair;
  }
  if (found) {
    r.fields["question"] = r.fields.at(found->first);
    r.fields["answer"] = r.fields.at(found->second);
    return r;
  }
  if (has(r, "text")) return r;
  std::string expected = "expected \"text\"";
  for (const auto& [q, a] : pairs) expected += std::string(", \"") + q + "\" + \"" + a + "\"";
  LETHE_FAIL(source, ": ", expected, keys_note(object));
}

// PKU-SafeRLHF: one record per unsafe response (the harmful answers to forget).
void pku_records(const json& object, const std::string& source, std::vector<Record>& out) {
  const std::string& prompt = as_string(require(object, "prompt", source), source, "prompt");
  for (int i = 0; i < 2; ++i) {
    const std::string response_key = "response_" + std::to_string(i);
    const std::string safe_key = "is_response_" + std::to_string(i) + "_safe";
    const std::string& response =
        as_string(require(object, response_key, source), source, response_key);
    const json& safe = require(object, safe_key, source);
    LETHE_CHECK(safe.is_boolean(), field_prefix(source, safe_key), "expected true or false, got ",
                describe_json(safe));
    if (safe.get<bool>()) continue;
    Record r = read_fields(object, source + " (" + response_key + ")", {});
    r.fields["question"] = prompt;
    r.fields["answer"] = response;
    r.fields["response"] = response;
    out.push_back(std::move(r));
  }
}

std::vector<Record> json_records(const std::string& path, Format format) {
  std::vector<Record> records;
  const size_t objects =
      for_each_json_object(path, [&](const json& object, const std::string& source) {
        switch (format) {
          case Format::tofu: records.push_back(tofu_record(object, source)); break;
          case Format::pku: pku_records(object, source, records); break;
          case Format::muse:
            records.push_back(
                qa_or_text_record(object, source, {{"question", "answer"}, {"prompt", "gt"}}));
            break;
          case Format::jsonl:
            records.push_back(qa_or_text_record(
                object, source, {{"question", "answer"}, {"prompt", "completion"}}));
            break;
          default: LETHE_FAIL(path, ": format ", format_name(format), " is not JSON");
        }
      });
  // Only PKU can read objects and make no record.
  LETHE_CHECK(!records.empty(), path, ": no record: every response of the ", objects,
              " lines is marked safe (only unsafe responses become records)");
  return records;
}

// "Best Answer" -> "best_answer".
std::string field_name(const std::string& column) {
  std::string out;
  for (char c : column) {
    if (std::isalnum(static_cast<unsigned char>(c)))
      out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    else if (!out.empty() && out.back() != '_')
      out.push_back('_');
  }
  while (!out.empty() && out.back() == '_') out.pop_back();
  return out;
}

std::string trim(const std::string& s) {
  const char* space = " \t\r\n";
  const size_t b = s.find_first_not_of(space);
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(space) - b + 1);
}

// "a; b;c;" -> {"a", "b", "c"}: split on ';', trimmed, empty items dropped.
std::vector<std::string> split_answers(const std::string& cell) {
  std::vector<std::string> out;
  size_t begin = 0;
  for (;;) {
    const size_t end = cell.find(';', begin);
    std::string item = trim(cell.substr(begin, end == std::string::npos ? end : end - begin));
    if (!item.empty()) out.push_back(std::move(item));
    if (end == std::string::npos) break;
    begin = end + 1;
  }
  return out;
}

// TruthfulQA.csv: a header row naming the columns, then one question per row.
std::vector<Record> truthfulqa_records(const std::string& path) {
  const std::string text = io::read_text_file(path);
  std::string_view view(text);
  if (view.substr(0, 3) == "\xEF\xBB\xBF") view.remove_prefix(3);
  std::vector<CsvRow> rows = parse_csv(view, path);
  LETHE_CHECK(!rows.empty(), path,
              ": empty file (expected a header row, then one row per question)");
  const CsvRow& header = rows.front();
  std::vector<std::string> columns;
  std::set<std::string> seen;
  for (const auto& cell : header.cells) {
    tokenizer::check_utf8(cell, path + ":" + std::to_string(header.line) + ": header");
    columns.push_back(trim(cell));
    LETHE_CHECK(seen.insert(columns.back()).second, path, ":", header.line, ": column \"",
                columns.back(), "\" appears twice in the header");
  }
  auto column_list = [&] {
    std::string out;
    for (const auto& c : columns) out += (out.empty() ? "\"" : ", \"") + c + "\"";
    return out;
  };
  for (const char* required : {"Question", "Best Answer"})
    LETHE_CHECK(seen.count(required), path, ":", header.line, ": the header has no column \"",
                required, "\" (it has ", column_list(), ")");
  LETHE_CHECK(rows.size() > 1, path, ": no row after the header");

  std::vector<Record> records;
  records.reserve(rows.size() - 1);
  for (size_t i = 1; i < rows.size(); ++i) {
    const CsvRow& row = rows[i];
    const std::string source = path + ":" + std::to_string(row.line);
    LETHE_CHECK(row.cells.size() == columns.size(), source, ": ", row.cells.size(),
                " columns, the header has ", columns.size());
    Record r;
    r.source = source;
    for (size_t c = 0; c < columns.size(); ++c) {
      const std::string& cell = row.cells[c];
      tokenizer::check_utf8(cell, source + ": column \"" + columns[c] + "\"");
      const std::string name = field_name(columns[c]);
      if (columns[c] == "Correct Answers" || columns[c] == "Incorrect Answers")
        r.lists[name] = split_answers(cell);
      else
        r.fields[name] = cell;
    }
    r.fields["answer"] = r.fields.at("best_answer");
    records.push_back(std::move(r));
  }
  return records;
}

}  // namespace

Format parse_format(const std::string& name) {
  for (Format f : kFormats)
    if (name == format_name(f)) return f;
  std::string valid;
  for (Format f : kFormats) valid += std::string(valid.empty() ? "" : ", ") + format_name(f);
  LETHE_FAIL("unknown data format \"", name, "\" (valid: ", valid, ")");
}

const char* format_name(Format f) {
  switch (f) {
    case Format::tofu: return "tofu";
    case Format::pku: return "pku";
    case Format::truthfulqa: return "truthfulqa";
    case Format::muse: return "muse";
    case Format::jsonl: return "jsonl";
    case Format::tokenized: return "tokenized";
  }
  LETHE_FAIL("invalid data format value ", static_cast<int>(f));
}

std::vector<Record> load_records(const std::string& path, Format format) {
  switch (format) {
    case Format::truthfulqa: return truthfulqa_records(path);
    case Format::tokenized:
      LETHE_FAIL(path,
                 ": format tokenized holds token ids, not text records (load_tokenized "
                 "reads it)");
    default: return json_records(path, format);
  }
}

}  // namespace lethe::trainers::data
