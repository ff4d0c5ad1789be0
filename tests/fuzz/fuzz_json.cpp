// Fuzz target: the project's one JSON reader (syntax, UTF-8, duplicate keys, depth and size
// limits), and printing what it accepted.
#include <string_view>

#include "engine/io/json.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lethe::fuzz::expect_only_lethe_errors([&] {
    const auto j =
        lethe::io::parse_json(std::string_view(reinterpret_cast<const char*>(data), size), "f");
    (void)lethe::io::json_excerpt(j);
    (void)j.dump();
  });
  return 0;
}
