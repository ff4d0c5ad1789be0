// Shared CLI helpers: JSON Lines output and text input (see cli_util.h).
#include "tools/cli/cli_util.h"

#include <charconv>
#include <fstream>
#include <iostream>

#include "engine/error.h"
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
// parsed as JSON (a syntax error is passed on as a discarded value).
template <typename F>
void for_each_json_line(const std::string& path, const std::string& flag, F parse) {
  std::ifstream file;
  std::istream* in = &std::cin;
  if (path != "-") {
    file.open(path, std::ios::binary);
    LETHE_CHECK(file.is_open(), flag, " ", path, ": cannot open file");
    in = &file;
  }
  std::string line;
  for (int64_t line_no = 1; std::getline(*in, line); ++line_no) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    parse(nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false), line_no, line);
  }
  LETHE_CHECK(!in->bad(), flag, " ", path, ": read error");
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
        if (ok)
          for (const auto& v : value) ok = ok && v.is_number_integer();
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

}  // namespace lethe::cli
