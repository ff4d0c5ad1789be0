// RFC 4180 CSV text -> rows of cells, for the data sets shipped as CSV (TruthfulQA). Parses bytes
// only: no header semantics, no encodings, no files.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace lethe::trainers::data {

struct CsvRow {
  std::vector<std::string> cells;
  size_t line = 0;  // 1-based line on which the row starts (a quoted cell may span lines)
};

// Splits `text` into rows: cells separated by ',', rows by "\n" or "\r\n"; a cell that starts
// with '"' is quoted and may hold ',', newlines and '""' (one quote). Empty lines are skipped.
// Errors (lethe::Error, "<source>:<line>: ..."): a quoted cell that never closes, a character
// other than ',' or a line end after a closing quote, a '"' inside an unquoted cell.
std::vector<CsvRow> parse_csv(std::string_view text, const std::string& source);

}  // namespace lethe::trainers::data
