// Fuzz target: recipes (YAML) and their checks — flattening into dotted keys, the schema's types
// and ranges, required keys — for both commands. Every input is accepted or refused with a
// lethe::Error; a config that loads must also survive a second load of its own values.
#include <cstdint>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_common.h"
#include "trainers/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using lethe::trainers::RunKind;
  const auto dir = lethe::fuzz::input_as_file("recipe", "r.yaml", lethe::fuzz::as_text(data, size));
  const std::string path = (dir / "r.yaml").string();
  for (RunKind kind : {RunKind::unlearn, RunKind::finetune}) {
    lethe::fuzz::expect_only_lethe_errors([&] {
      const lethe::trainers::Config c = lethe::trainers::load_config(path, {}, kind);
      std::vector<std::string> sets;
      for (const auto& [k, v] : c.values()) sets.push_back(k + "=" + v);
      const lethe::trainers::Config again = lethe::trainers::load_config("", sets, kind);
      if (again.values() != c.values()) {
        std::fprintf(stderr, "fuzz: a loaded recipe does not reload to the same values\n");
        std::abort();
      }
    });
  }
  return 0;
}
