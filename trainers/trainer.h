// The training loop every method and fine-tuning share (docs/architecture.md): set-up
// (trainers/setup.cpp), the step and the run (loop.cpp), data order (data_order.cpp), checkpoints,
// resume and run.json (checkpoint.cpp, run_record.cpp). Sees models only through
// models::CausalLM and methods only through their Method (objectives, rule, hooks).
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "models/causal_lm.h"
#include "models/sequence_classifier.h"
#include "trainers/config.h"
#include "trainers/methods/method.h"
#include "trainers/run_record.h"

namespace lethe::trainers {

// Metrics measured at each evaluation by a layer above the trainers (eval.metrics: tofu; the
// eval layer's tofu_step_metrics builds the hook): NaN / −1 where not measured.
struct StepMetrics {
  double model_utility = std::numeric_limits<double>::quiet_NaN();
  double forget_quality = -1;
  double forget_rouge = std::numeric_limits<double>::quiet_NaN();
};
using EvalHook = std::function<StepMetrics(models::CausalLM& model)>;

struct TrainerOptions {
  std::ostream* log = nullptr;  // progress and messages (default std::cerr)
  bool terminal = false;        // redraw a bar in place (set when stderr is a terminal)
  // Stop after this many steps of this invocation, leaving a checkpoint (0 = run to the end);
  // for tests of resume.
  int64_t stop_after = 0;
  // eval.metrics: tofu — what each evaluation measures beside the held-out NLL (required then).
  EvalHook evaluate;
};

class Trainer {
 public:
  // Loads the model, the reference model (when the method needs one), the tokenizer and the data,
  // and checks them; throws lethe::Error before any step on bad input.
  explicit Trainer(Config config, TrainerOptions options = {});
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Runs every step and writes output.dir (config.json, model.safetensors, tokenizer files,
  // run.json). Returns the number of steps run by this call.
  int64_t run();

  const Method& method() const;
  const std::vector<StepRecord>& steps() const;
  const std::vector<EvalRecord>& evals() const;
  int64_t total_steps() const;
  models::CausalLM& model();
  // With model.head: classifier, the classifier (model() is its backbone); else null.
  models::SequenceClassifier* classifier();

  // The run's state (trainers/loop_state.h, internal to the loop's files).
  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace lethe::trainers
