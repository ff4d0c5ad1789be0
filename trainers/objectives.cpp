// The losses of docs/methods.md, each as a differentiable sum over its items.
#include "trainers/objectives.h"

#include "engine/error.h"

namespace lethe::trainers {

bool needs_reference_logits(LossKind k) {
  return k == LossKind::kl;
}
bool needs_reference_nll(LossKind k) {
  return k == LossKind::npo;
}

double item_count(const Objective& o, const MicroBatch& mb) {
  switch (o.loss) {
    case LossKind::nll:
      return static_cast<double>(o.reduction == Reduction::sample_mean ? mb.rows_with_answer()
                                                                       : mb.tokens());
    case LossKind::uce: return static_cast<double>(mb.tokens());
    case LossKind::kl: return static_cast<double>(mb.rows() * mb.length());
    case LossKind::npo: return static_cast<double>(mb.rows());
    case LossKind::simnpo: return static_cast<double>(mb.rows_with_answer());
  }
  return 0;
}

Tensor sequence_nll(const Tensor& logits, const Tensor& targets) {
  CrossEntropyOptions ce;
  ce.reduction = Reduction::sequence_sum;
  return cross_entropy(logits, targets, ce);
}

namespace {

// 1/|yᵢ| per row (0 for a row without answer tokens), on `device`.
Tensor inverse_lengths(const MicroBatch& mb, Device device) {
  std::vector<double> inv;
  for (int64_t a : mb.answer_tokens) inv.push_back(a > 0 ? 1.0 / static_cast<double>(a) : 0.0);
  return Tensor::from_vector(inv, {mb.rows()}, DType::f32, device);
}

}  // namespace

Tensor item_sum(const Objective& o, const LossParams& p, const MicroBatch& mb, const Tensor& logits,
                const Tensor& targets, const ReferenceOutputs& ref) {
  switch (o.loss) {
    case LossKind::nll: {
      if (o.reduction == Reduction::sample_mean)
        return sum(mul(sequence_nll(logits, targets), inverse_lengths(mb, logits.device())));
      CrossEntropyOptions ce;
      ce.reduction = Reduction::none;
      return sum(cross_entropy(logits, targets, ce));
    }
    case LossKind::uce: {
      CrossEntropyOptions ce;
      ce.reduction = Reduction::none;
      ce.mode = LossMode::unlikelihood;
      ce.unlikelihood_c = p.c;
      return sum(cross_entropy(logits, targets, ce));
    }
    case LossKind::kl:
      LETHE_CHECK(ref.logits.defined(), "objective ", o.name, ": no reference logits");
      return sum(kl_div(ref.logits, logits));
    case LossKind::npo: {
      LETHE_CHECK(ref.seq_nll.defined(), "objective ", o.name, ": no reference NLL");
      // −(2/β) log σ(β (ℓ − ℓ_ref)) per row
      Tensor x = scale(sub(sequence_nll(logits, targets), ref.seq_nll), p.beta);
      return scale(sum(log_sigmoid(x)), -2.0 / p.beta);
    }
    case LossKind::simnpo: {
      // −(2/β) log σ(β (ℓ/|y| − δ)) per row with answer tokens
      Tensor inv = inverse_lengths(mb, logits.device());
      Tensor f = add_scalar(mul(sequence_nll(logits, targets), inv), -p.delta);
      std::vector<double> has;
      for (int64_t a : mb.answer_tokens) has.push_back(a > 0 ? 1.0 : 0.0);
      Tensor keep = Tensor::from_vector(has, {mb.rows()}, DType::f32, logits.device());
      return scale(sum(mul(log_sigmoid(scale(f, p.beta)), keep)), -2.0 / p.beta);
    }
  }
  throw Error("objective " + o.name + ": unknown loss");
}

}  // namespace lethe::trainers
