// Fuzz target: the trainer state of a resume checkpoint (trainer_state.json) — the JSON reader,
// then every field checked for type and range against a 10-step run of a two-objective method.
// Every input is taken or refused with a lethe::Error; a taken state must be self-consistent.
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "engine/io/json.h"
#include "tests/fuzz/fuzz_common.h"
#include "trainers/run_record.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lethe::trainers::RecordLayout layout({"forget_nll", "retain_nll"});
  layout.hook_key = "gen";
  lethe::fuzz::expect_only_lethe_errors([&] {
    const auto j = lethe::io::parse_json(
        std::string_view(reinterpret_cast<const char*>(data), size), "trainer_state.json");
    const lethe::trainers::CheckpointState s =
        lethe::trainers::parse_checkpoint_state(j, "trainer_state.json", 10, layout);
    const bool consistent = s.steps_done >= 1 && s.steps_done < 10 &&
                            static_cast<int64_t>(s.steps.size()) == s.steps_done &&
                            s.optimizer_steps >= 0 && s.optimizer_steps <= s.steps_done &&
                            s.best_step >= -1 && s.best_step <= s.steps_done;
    if (!consistent) {
      std::fprintf(stderr, "fuzz: a checkpoint state was taken out of range\n");
      std::abort();
    }
    for (const auto& r : s.steps)
      if (r.losses.size() != 2 || r.grad_norms.size() != 2 || r.weights.size() != 2) {
        std::fprintf(stderr, "fuzz: a step record lacks an objective\n");
        std::abort();
      }
  });
  return 0;
}
