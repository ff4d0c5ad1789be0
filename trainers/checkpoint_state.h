// The trainer state of a resume checkpoint (checkpoint/trainer_state.json), read and checked
// field by field before a run takes any of it. No file access and no training logic here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "trainers/trainer.h"

namespace lethe::trainers {

struct CheckpointState {
  int64_t steps_done = 0, optimizer_steps = 0, best_step = -1;
  double base_lr = 0;
  double best_score = 0;  // NaN: no evaluation has scored yet
  std::vector<StepRecord> steps;
  std::vector<EvalRecord> evals;
};

// Reads `state` (the parsed trainer_state.json at `path`) for a run of `total_steps` steps whose
// method has the objectives `objectives`. Every field must be there, typed (whole numbers are
// JSON integers) and in range: 1 <= steps_done < total_steps, one step record per step done
// numbered 1.., finite losses and rates, evaluations at steps already done. Anything else is a
// lethe::Error naming `path` and the field.
CheckpointState parse_checkpoint_state(const nlohmann::json& state, const std::string& path,
                                       int64_t total_steps,
                                       const std::vector<std::string>& objectives);

}  // namespace lethe::trainers
