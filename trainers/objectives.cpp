// The losses of docs/methods.md, each as a differentiable sum over its items.
#include "trainers/objectives.h"

#include "engine/error.h"
#include "models/sequence_classifier.h"

namespace lethe::trainers {

const char* batch_kind_name(BatchKind b) {
  switch (b) {
    case BatchKind::forget: return "forget";
    case BatchKind::retain: return "retain";
    case BatchKind::random: return "random";
  }
  return "?";
}

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
    case LossKind::classify: return static_cast<double>(mb.rows());
  }
  return 0;
}

const Tensor& HeadOutput::logits() const {
  if (!logits_.defined()) logits_ = linear(hidden_, weight_);
  return logits_;
}

Tensor sequence_nll(const Tensor& logits, const Tensor& targets) {
  CrossEntropyOptions ce;
  ce.reduction = Reduction::sequence_sum;
  return cross_entropy(logits, targets, ce);
}

Tensor sequence_nll(const HeadOutput& out, const Tensor& targets) {
  LinearCrossEntropyOptions o;
  o.per_token = true;
  return sum(linear_cross_entropy(out.hidden(), out.weight(), targets, o), -1);
}

namespace {

// 1/|yᵢ| per row (0 for a row without answer tokens), on `device`.
Tensor inverse_lengths(const MicroBatch& mb, Device device) {
  std::vector<double> inv;
  for (int64_t a : mb.answer_tokens) inv.push_back(a > 0 ? 1.0 / static_cast<double>(a) : 0.0);
  return Tensor::from_vector(inv, {mb.rows()}, DType::f32, device);
}

// 1/|yᵢ| on every position of row i: [B, T] (the sample-mean weights of each token).
Tensor inverse_length_weights(const MicroBatch& mb, Device device) {
  const int64_t B = mb.rows(), T = mb.length();
  std::vector<double> w(static_cast<size_t>(B * T), 0.0);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t a = mb.answer_tokens[static_cast<size_t>(b)];
    for (int64_t t = 0; t < T; ++t) w[b * T + t] = a > 0 ? 1.0 / static_cast<double>(a) : 0.0;
  }
  return Tensor::from_vector(w, {B, T}, DType::f32, device);
}

}  // namespace

Tensor item_sum(const Objective& o, const LossParams& p, const MicroBatch& mb,
                const HeadOutput& out, const Tensor& targets, const ReferenceOutputs& ref) {
  switch (o.loss) {
    case LossKind::nll: {
      // Σ over answer tokens (token_mean), or Σ over rows of the row's mean (sample_mean: each
      // token weighted 1/|yᵢ|), both as one scalar through the fused head.
      LinearCrossEntropyOptions lo;
      if (o.reduction == Reduction::sample_mean)
        lo.weights = inverse_length_weights(mb, out.hidden().device());
      return linear_cross_entropy(out.hidden(), out.weight(), targets, lo);
    }
    case LossKind::uce: {
      LinearCrossEntropyOptions lo;
      lo.mode = LossMode::unlikelihood;
      lo.unlikelihood_c = p.c;
      return linear_cross_entropy(out.hidden(), out.weight(), targets, lo);
    }
    case LossKind::kl:
      LETHE_CHECK(ref.logits.defined(), "objective ", o.name, ": no reference logits");
      return sum(kl_div(ref.logits, out.logits()));
    case LossKind::npo: {
      LETHE_CHECK(ref.seq_nll.defined(), "objective ", o.name, ": no reference NLL");
      // −(2/β) log σ(β (ℓ − ℓ_ref)) per row
      Tensor x = scale(sub(sequence_nll(out, targets), ref.seq_nll), p.beta);
      return scale(sum(log_sigmoid(x)), -2.0 / p.beta);
    }
    case LossKind::simnpo: {
      // −(2/β) log σ(β (ℓ/|y| − δ)) per row with answer tokens
      const Device dev = out.hidden().device();
      Tensor inv = inverse_lengths(mb, dev);
      Tensor f = add_scalar(mul(sequence_nll(out, targets), inv), -p.delta);
      std::vector<double> has;
      for (int64_t a : mb.answer_tokens) has.push_back(a > 0 ? 1.0 : 0.0);
      Tensor keep = Tensor::from_vector(has, {mb.rows()}, DType::f32, dev);
      return scale(sum(mul(log_sigmoid(scale(f, p.beta)), keep)), -2.0 / p.beta);
    }
    case LossKind::classify: {
      // Σ over rows of −log softmax(W · h_last)[class]: transformers' single-label
      // *ForSequenceClassification loss times the row count.
      LETHE_CHECK(static_cast<int64_t>(mb.classes.size()) == mb.rows(), "objective ", o.name,
                  ": the micro-batch has no classes (a language-modelling batch)");
      for (int64_t c : mb.classes)
        LETHE_CHECK(c >= 0 && c < out.weight().size(0), "objective ", o.name, ": class ", c,
                    " outside the head's ", out.weight().size(0), " labels");
      const Device dev = out.hidden().device();
      const Tensor logits =
          linear(models::last_token_states(out.hidden(), mb.mask.to(dev)), out.weight());
      CrossEntropyOptions ce;
      ce.reduction = Reduction::none;
      return sum(cross_entropy(
          logits, Tensor::from_vector(mb.classes, {mb.rows()}, DType::i64).to(dev), ce));
    }
  }
  throw Error("objective " + o.name + ": unknown loss");
}

}  // namespace lethe::trainers
