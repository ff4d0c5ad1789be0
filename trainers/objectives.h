// Objectives: the losses of docs/methods.md as "a sum over items" of one micro-batch, plus the
// item count, so a step normalises by the count of its whole accumulated batch. No training loop
// and no combination rule here.
#pragma once

#include <string>

#include "engine/ops.h"
#include "engine/tensor.h"
#include "trainers/batch.h"

namespace lethe::trainers {

enum class LossKind { nll, kl, uce, npo, simnpo };
// Which micro-batch an objective reads: the forget one (the batch the epoch runs over: the
// training set when fine-tuning), the retain one paired with it, or the forget prompts with
// random retain answers (ga_mismatch_kl).
enum class BatchKind { forget, retain, random };

struct Objective {
  std::string name;  // e.g. "forget_nll": run.json's and the progress line's label
  BatchKind batch = BatchKind::forget;
  LossKind loss = LossKind::nll;
  double sign = 1.0;                            // −1: gradient ascent on this loss
  Reduction reduction = Reduction::token_mean;  // nll only: token_mean or sample_mean
};

struct LossParams {
  double beta = 0.1;   // npo, simnpo
  double delta = 0.0;  // simnpo
  double c = 0.5;      // uce
};

// What an objective needs from the frozen reference model (computed once per micro-batch).
struct ReferenceOutputs {
  Tensor logits;   // [B, T, V] (kl)
  Tensor seq_nll;  // [B] ℓ_ref per row (npo)
};

bool needs_reference_logits(LossKind k);
bool needs_reference_nll(LossKind k);

// The number of items of `o` in `mb` (answer tokens, rows, or positions).
double item_count(const Objective& o, const MicroBatch& mb);
// Σ over the items of the loss (unsigned, differentiable w.r.t. logits). targets: mb.targets on
// the logits' device.
Tensor item_sum(const Objective& o, const LossParams& p, const MicroBatch& mb, const Tensor& logits,
                const Tensor& targets, const ReferenceOutputs& ref);
// ℓ per row (sum of answer-token NLL) of logits against targets: [B], differentiable.
Tensor sequence_nll(const Tensor& logits, const Tensor& targets);

}  // namespace lethe::trainers
