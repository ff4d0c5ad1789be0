// Fuzz target: config.json parsing and validation (types, ranges, sizes, token ids), and the
// save → load round trip of whatever validated.
#include <string_view>

#include "engine/io/json.h"
#include "models/opt/opt_config.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lethe::fuzz::expect_only_lethe_errors([&] {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const auto j = lethe::io::parse_json(text, "config.json");
    const auto c = lethe::models::opt_config_from_json(j, "config.json");
    (void)c.parameter_count();
    const auto again = lethe::models::opt_config_from_json(
        lethe::io::parse_json(c.to_json().dump(), "round trip"), "round trip");
    if (again.hidden_size != c.hidden_size) std::abort();
  });
  return 0;
}
