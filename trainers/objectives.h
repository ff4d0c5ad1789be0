// Objectives: the losses of docs/methods.md as "a sum over items" of one micro-batch, plus the
// item count, so a step normalises by the count of its whole accumulated batch. No training loop
// and no combination rule here.
#pragma once

#include <string>
#include <utility>

#include "engine/ops.h"
#include "engine/tensor.h"
#include "trainers/batch.h"

namespace lethe::trainers {

// classify: cross-entropy of a sequence classifier's class logits (the head applied to each row's
// last real token) against the rows' classes; its HeadOutput's weight is the score head.
enum class LossKind { nll, kl, uce, npo, simnpo, classify };
// Which micro-batch an objective reads: the forget one (the batch the epoch runs over: the
// training set when fine-tuning), the retain one paired with it, or the forget prompts with
// random retain answers (ga_mismatch_kl).
enum class BatchKind { forget, retain, random };
const char* batch_kind_name(BatchKind b);  // "forget", "retain", "random"

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

// A model's output on one micro-batch as the losses read it: the final hidden states [B, T, E]
// and the head weight: the LM head [V, E], or a classifier's score head [labels, E]. Token losses
// go through the fused head (linear_cross_entropy), which never holds the [B, T, V] logits; the
// logits are made only for objectives that need whole distributions (kl), once, on first use.
class HeadOutput {
 public:
  HeadOutput(Tensor hidden, Tensor weight)
      : hidden_(std::move(hidden)), weight_(std::move(weight)) {}
  const Tensor& hidden() const { return hidden_; }
  const Tensor& weight() const { return weight_; }
  const Tensor& logits() const;

 private:
  Tensor hidden_, weight_;
  mutable Tensor logits_;
};

// The number of items of `o` in `mb` (answer tokens, rows, or positions).
double item_count(const Objective& o, const MicroBatch& mb);
// Σ over the items of the loss (unsigned, differentiable w.r.t. the hidden states and the head).
// targets: mb.targets, on the host (the fused head copies them over) or on the model's device.
Tensor item_sum(const Objective& o, const LossParams& p, const MicroBatch& mb,
                const HeadOutput& out, const Tensor& targets, const ReferenceOutputs& ref);
// ℓ per row (sum of answer-token NLL) against targets: [B], differentiable; from the fused head
// or from logits.
Tensor sequence_nll(const HeadOutput& out, const Tensor& targets);
Tensor sequence_nll(const Tensor& logits, const Tensor& targets);

}  // namespace lethe::trainers
