// Shared CLI helpers: JSON Lines output and text input (see cli_util.h).
#include "tools/cli/cli_util.h"

#include <charconv>
#include <climits>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <sstream>

#include "engine/error.h"
#include "engine/io/file_util.h"
#include "engine/io/json.h"
#include "engine/ops.h"
#include "engine/tensor.h"

namespace lethe::cli {

void emit(const nlohmann::json& object) {
  std::cout << object.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
  std::cout.flush();
}

void emit(const nlohmann::ordered_json& object) {
  std::cout << object.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
  std::cout.flush();
}

void note(const std::string& message) {
  std::cerr << "lethe: " << message << '\n';
}

namespace {

// Calls `parse(value, line_no, line)` for every non-blank line of `path` ("-" = stdin), each
// parsed by the project's JSON reader (depth and size limits; a line it rejects is passed on as
// a discarded value, so the caller's message names the file, line and what was expected). A file
// is read through lethe::io (a regular file, bounded size: a FIFO or a directory is an error).
template <typename F>
void for_each_json_line(const std::string& path, const std::string& flag, F parse) {
  std::string text;
  if (path == "-") {
    std::ostringstream ss;
    ss << std::cin.rdbuf();
    LETHE_CHECK(!std::cin.bad(), flag, " -: read error on standard input");
    text = ss.str();
  } else {
    try {
      text = io::read_text_file(path);
    } catch (const lethe::Error& e) {
      LETHE_FAIL(flag, " ", e.what());
    }
  }
  std::istringstream in(text);
  std::string line;
  for (int64_t line_no = 1; std::getline(in, line); ++line_no) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    nlohmann::json value(nlohmann::json::value_t::discarded);
    try {
      value = io::parse_json(line, path + ":" + std::to_string(line_no));
    } catch (const lethe::Error&) {
    }
    parse(value, line_no, line);
  }
}

}  // namespace

std::vector<std::string> read_json_string_lines(const std::string& path) {
  std::vector<std::string> texts;
  for_each_json_line(
      path, "--input", [&](const nlohmann::json& value, int64_t line_no, const std::string& line) {
        LETHE_CHECK(value.is_string(), "--input ", path, ":", line_no,
                    ": expected one JSON string per line (e.g. \"hello\\nworld\"), got: ",
                    line.substr(0, 60));
        texts.push_back(value.get<std::string>());
      });
  return texts;
}

std::vector<std::vector<int64_t>> read_id_lines(const std::string& path, const std::string& flag) {
  std::vector<std::vector<int64_t>> rows;
  for_each_json_line(
      path, flag, [&](const nlohmann::json& value, int64_t line_no, const std::string& line) {
        bool ok = value.is_array();
        if (ok)  // integers that fit int64 (an unsigned value past 2^63 - 1 would wrap)
          for (const auto& v : value)
            ok = ok && v.is_number_integer() &&
                 !(v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX));
        LETHE_CHECK(ok, flag, " ", path, ":", line_no,
                    ": expected one JSON array of token ids per line (e.g. [2, 100, 7]), got: ",
                    line.substr(0, 60));
        rows.push_back(value.get<std::vector<int64_t>>());
      });
  return rows;
}

std::vector<std::string> gather_texts(const std::vector<std::string>& args,
                                      const std::string& input_path) {
  std::vector<std::string> texts = args;
  if (!input_path.empty()) {
    std::vector<std::string> more = read_json_string_lines(input_path);
    texts.insert(texts.end(), more.begin(), more.end());
  }
  LETHE_CHECK(!args.empty() || !input_path.empty(),
              "no texts given: pass them as arguments or with --input FILE (one JSON string per "
              "line)");
  return texts;
}

int64_t parse_token_id(const std::string& text, const std::string& what) {
  int64_t id = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, id);
  LETHE_CHECK(ec == std::errc() && ptr == end && !text.empty(), what, ": '", text,
              "' is not a token id (an integer)");
  return id;
}

ScopedMatmulPrecision::ScopedMatmulPrecision(const std::string& dtype)
    : saved_(static_cast<int>(matmul_precision())) {
  LETHE_CHECK(dtype == "f32" || dtype == "bf16", "--dtype: '", dtype,
              "' is not supported (f32, or bf16 for bf16 matmuls with f32 accumulation)");
  set_matmul_precision(dtype == "bf16" ? MatmulPrecision::bf16 : MatmulPrecision::f32);
}

ScopedMatmulPrecision::~ScopedMatmulPrecision() {
  set_matmul_precision(static_cast<MatmulPrecision>(saved_));
}

CLI::Validator device_validator() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        try {
          (void)Device::parse(value);
        } catch (const lethe::Error& e) {
          return e.what();
        }
        return "";
      },
      "DEVICE", "device");
}

namespace {
std::string number_text(double v) {
  std::ostringstream ss;
  ss << v;  // %g-like: 1e+06, 0.5, 1
  return ss.str();
}
}  // namespace

CLI::Validator number_in(double lo, double hi, bool lo_open) {
  const std::string range =
      std::string(lo_open ? "(" : "[") + number_text(lo) + ", " + number_text(hi) + "]";
  return CLI::Validator(
      [lo, hi, lo_open, range](std::string& value) -> std::string {
        double v = 0;
        const char* end = value.data() + value.size();
        auto [ptr, ec] = std::from_chars(value.data(), end, v);
        const bool parsed = ec == std::errc() && ptr == end && !value.empty();
        const bool inside = parsed && std::isfinite(v) && (lo_open ? v > lo : v >= lo) && v <= hi;
        return inside ? "" : "must be a finite number in " + range + ", got '" + value + "'";
      },
      "NUMBER in " + range, "number_in");
}

CLI::Validator integer_in(int64_t lo, int64_t hi) {
  const std::string range = "[" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  return CLI::Validator(
      [lo, hi, range](std::string& value) -> std::string {
        int64_t v = 0;
        const char* end = value.data() + value.size();
        auto [ptr, ec] = std::from_chars(value.data(), end, v);
        const bool parsed = ec == std::errc() && ptr == end && !value.empty();
        return parsed && v >= lo && v <= hi
                   ? ""
                   : "must be an integer in " + range + ", got '" + value + "'";
      },
      "INT in " + range, "integer_in");
}

CLI::Validator seed_validator() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        uint64_t v = 0;
        const char* end = value.data() + value.size();
        // from_chars for unsigned types refuses a sign, so "-1" cannot wrap to 2^64 - 1.
        auto [ptr, ec] = std::from_chars(value.data(), end, v);
        const bool ok = ec == std::errc() && ptr == end && !value.empty();
        return ok ? "" : "must be an integer in [0, 18446744073709551615], got '" + value + "'";
      },
      "SEED", "seed");
}

}  // namespace lethe::cli
