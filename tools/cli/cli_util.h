// Helpers every lethe subcommand shares: JSON Lines on stdout, messages on stderr, reading texts
// from arguments or `--input FILE`. Must not know about any particular subcommand.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

namespace lethe::cli {

// Writes one JSON object as one line on stdout (UTF-8, invalid bytes replaced) and flushes.
void emit(const nlohmann::json& object);
void emit(const nlohmann::ordered_json& object);  // keeps key order

// Prints "lethe: <message>" on stderr (progress and notes; never data).
void note(const std::string& message);

// Reads `path` ("-" = stdin) as one JSON string per line; blank lines are skipped. Anything else
// is a lethe::Error naming the file and line.
std::vector<std::string> read_json_string_lines(const std::string& path);

// The texts of a command: the positional arguments, then the lines of `input_path` (if not
// empty). None at all is a lethe::Error naming both ways to pass them.
std::vector<std::string> gather_texts(const std::vector<std::string>& args,
                                      const std::string& input_path);

// Reads `path` ("-" = stdin) as one JSON array of token ids per line; blank lines are skipped.
// `flag` names the option in errors.
std::vector<std::vector<int64_t>> read_id_lines(const std::string& path, const std::string& flag);

// Parses a token id argument ("123"); lethe::Error naming `what` and the text otherwise.
int64_t parse_token_id(const std::string& text, const std::string& what);

// Checks a --device value ("cpu", "cuda", "cuda:N") while the command line is parsed, so a
// malformed one is a usage error (exit 2) naming the flag. Whether the device exists is checked
// when it is used (exit 1).
CLI::Validator device_validator();

// Sets the engine's GEMM precision from a --dtype value ("f32" or "bf16") for its lifetime.
class ScopedMatmulPrecision {
 public:
  explicit ScopedMatmulPrecision(const std::string& dtype);
  ~ScopedMatmulPrecision();
  ScopedMatmulPrecision(const ScopedMatmulPrecision&) = delete;
  ScopedMatmulPrecision& operator=(const ScopedMatmulPrecision&) = delete;

 private:
  int saved_;
};

}  // namespace lethe::cli
