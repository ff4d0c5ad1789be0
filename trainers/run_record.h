// The records of a run — one row per optimizer step, one per evaluation, and the trainer state of a
// resume checkpoint — and their one JSON schema: run.json's rows are written by step_to_json and
// eval_to_json, and a checkpoint's trainer_state.json (which holds the same rows) is read back by
// parse_checkpoint_state, field for field, so a resumed run's run.json equals the uninterrupted
// one's. No file access and no training logic here.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace lethe::trainers {

// What one optimizer step did (run.json's "steps" rows).
struct StepRecord {
  int64_t step = 0;                // 1-based
  double lr = 0;                   // the learning rate the step applied
  std::vector<double> losses;      // each objective's loss (signed as minimised)
  std::vector<double> grad_norms;  // each objective's gradient norm
  std::vector<double> weights;     // the rule's weights (MGDA λ, NGDiff 1/‖g‖, recipe weights)
  std::vector<bool> excluded;      // MGDA: left out of the solve
  std::string solution;            // MGDA: interior / edge / single
  double direction_norm = 0;       // ‖d‖ before clipping
  double tokens = 0;               // real tokens through the trained model
  double seconds = 0;
  double comm_seconds = 0;  // data parallel: the gradient all-reduces of this step
  // What the method's hook reported on this step (GeN's probe: run.json's "gen"); null if nothing.
  nlohmann::ordered_json hook;
};

struct EvalRecord {
  int64_t step = 0;
  double forget_nll = 0, retain_nll = 0;  // token_mean NLL on the held-out sets (NaN if none)
  // eval.metrics: tofu — the TOFU summary at this step (NaN / −1 when not measured).
  double model_utility = std::numeric_limits<double>::quiet_NaN();
  double forget_quality = -1;
  double forget_rouge = std::numeric_limits<double>::quiet_NaN();
};

// How a run labels its step rows: the objectives' names, whether the rule reports excluded
// objectives (MGDA), whether the run is data parallel (comm_seconds) and the hook's key.
struct RecordLayout {
  RecordLayout(std::vector<std::string> objective_names = {})
      : objectives(std::move(objective_names)) {}
  std::vector<std::string> objectives;
  bool excluded = false;
  bool comm = false;
  std::string hook_key;
};

nlohmann::ordered_json step_to_json(const StepRecord& r, const RecordLayout& layout);
nlohmann::ordered_json eval_to_json(const EvalRecord& e);

// The trainer state of a resume checkpoint (checkpoint/trainer_state.json).
struct CheckpointState {
  int64_t steps_done = 0, optimizer_steps = 0, best_step = -1;
  double base_lr = 0;
  double best_score = 0;  // NaN: no evaluation has scored yet
  std::vector<StepRecord> steps;
  std::vector<EvalRecord> evals;
};

// The "state" object of trainer_state.json.
nlohmann::ordered_json state_to_json(const CheckpointState& s);

// Reads `state` (the parsed trainer_state.json at `path`) for a run of `total_steps` steps laid out
// as `layout`. Every field must be there, typed (whole numbers are JSON integers) and in range:
// 1 <= steps_done < total_steps, one step record per step done numbered 1.., finite losses and
// rates, evaluations at steps already done. Anything else is a lethe::Error naming `path` and the
// field.
CheckpointState parse_checkpoint_state(const nlohmann::json& state, const std::string& path,
                                       int64_t total_steps, const RecordLayout& layout);

}  // namespace lethe::trainers
