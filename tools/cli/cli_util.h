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

// Flag values checked while the command line is parsed (a failure is a usage error, exit 2,
// "--flag: must be ..., got 'x'", naming the range in plain numbers):
// a finite number in [lo, hi] ("nan", "inf" and text are refused); with lo_open, in (lo, hi].
CLI::Validator number_in(double lo, double hi, bool lo_open = false);
// An integer in [lo, hi] in decimal digits; for lo >= 0 a sign is refused, so "-1" never wraps.
CLI::Validator integer_in(int64_t lo, int64_t hi);
// A seed: an integer in [0, 2^64 - 1] in decimal digits.
CLI::Validator seed_validator();

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
