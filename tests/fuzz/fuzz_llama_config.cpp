// Fuzz target: the Llama family's config.json (types, ranges, rope rules, eos lists, sliding
// windows), the rotary frequencies of whatever validated, and its save → load round trip.
#include <cmath>
#include <string_view>

#include "engine/io/json.h"
#include "models/llama/llama_config.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lethe::fuzz::expect_only_lethe_errors([&] {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const auto j = lethe::io::parse_json(text, "config.json");
    const auto c = lethe::models::llama_config_from_json(j, "config.json");
    (void)c.parameter_count();
    if (c.head_dim <= 4096) {  // the table is head_dim / 2 floats: bounded by validate, kept small
      const auto f = c.rope_frequencies();
      for (float x : f.inv_freq)
        if (std::isnan(x)) std::abort();
    }
    const auto again = lethe::models::llama_config_from_json(
        lethe::io::parse_json(c.to_json().dump(), "round trip"), "round trip");
    if (again.hidden_size != c.hidden_size || again.eos_token_ids != c.eos_token_ids) std::abort();
  });
  return 0;
}
