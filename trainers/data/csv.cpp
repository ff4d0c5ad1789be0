// See csv.h.
#include "trainers/data/csv.h"

#include "engine/error.h"

namespace lethe::trainers::data {

std::vector<CsvRow> parse_csv(std::string_view text, const std::string& source) {
  const size_t n = text.size();
  auto line_break_at = [&](size_t k) {
    return text[k] == '\n' || (text[k] == '\r' && k + 1 < n && text[k + 1] == '\n');
  };
  std::vector<CsvRow> rows;
  CsvRow row;
  row.line = 1;
  size_t line = 1;
  size_t i = 0;
  for (;;) {
    // One cell, starting at i.
    std::string cell;
    const bool quoted = i < n && text[i] == '"';
    if (quoted) {
      const size_t opened = line;
      ++i;
      for (;;) {
        LETHE_CHECK(i < n, source, ":", opened, ": quoted cell ", row.cells.size() + 1,
                    " opened on line ", opened, " never closes");
        if (text[i] == '"') {
          if (i + 1 < n && text[i + 1] == '"') {  // "" is one quote
            cell.push_back('"');
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        if (text[i] == '\n') ++line;
        cell.push_back(text[i++]);
      }
      LETHE_CHECK(i == n || text[i] == ',' || line_break_at(i), source, ":", line,
                  ": unexpected character '", text[i], "' after the closing quote of cell ",
                  row.cells.size() + 1, " (a quote inside a quoted cell is written \"\")");
    } else {
      while (i < n && text[i] != ',' && !line_break_at(i)) {
        LETHE_CHECK(text[i] != '"', source, ":", line, ": '\"' inside unquoted cell ",
                    row.cells.size() + 1,
                    " (quote the whole cell and double the quote: \"a \"\"b\"\" c\")");
        cell.push_back(text[i++]);
      }
    }
    row.cells.push_back(std::move(cell));
    if (i < n && text[i] == ',') {
      ++i;
      continue;
    }
    // End of the row: a line break or the end of the text. An empty line is one unquoted empty
    // cell and is skipped (as Python's csv module and pandas do).
    const bool blank = row.cells.size() == 1 && row.cells[0].empty() && !quoted;
    if (!blank) rows.push_back(std::move(row));
    if (i == n) break;
    i += text[i] == '\r' ? 2 : 1;
    ++line;
    row = CsvRow{};
    row.line = line;
    if (i == n) break;  // the text ends with a line break: no row after it
  }
  return rows;
}

}  // namespace lethe::trainers::data
