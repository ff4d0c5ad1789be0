// The training loop every method and fine-tuning share: data order, micro-batches and
// accumulation, per-objective gradient buffers, the combination rule, clipping, GeN, optimizer and
// schedule, evaluation, checkpoints, resume, progress and run.json. Sees models only through
// models::CausalLM.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "models/causal_lm.h"
#include "trainers/config.h"
#include "trainers/methods/method.h"

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
  // GeN, when it probed on this step.
  bool gen_probed = false, gen_accepted = false;
  double gen_loss_minus = 0, gen_loss_zero = 0, gen_loss_plus = 0, gen_h = 0, gen_g = 0;
  double gen_lr_before = 0, gen_lr_after = 0;
};

struct EvalRecord {
  int64_t step = 0;
  double forget_nll = 0, retain_nll = 0;  // token_mean NLL on the held-out sets (NaN if none)
  // eval.metrics: tofu — the TOFU summary at this step (NaN / −1 when not measured).
  double model_utility = std::numeric_limits<double>::quiet_NaN();
  double forget_quality = -1;
  double forget_rouge = std::numeric_limits<double>::quiet_NaN();
};

struct TrainerOptions {
  std::ostream* log = nullptr;  // progress and messages (default std::cerr)
  bool terminal = false;        // redraw a bar in place (set when stderr is a terminal)
  // Stop after this many steps of this invocation, leaving a checkpoint (0 = run to the end);
  // for tests of resume.
  int64_t stop_after = 0;
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

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lethe::trainers
