// cross_entropy (nll / unlikelihood, per-token weights, ignore_index, four reductions),
// token_logprobs and kl_div: one fused backend kernel per token, reductions by ordinary ops.
#include <cmath>
#include <sstream>

#include "engine/ops/common.h"

namespace lethe {

using namespace ops_detail;

namespace {

const char* reduction_name(Reduction r) {
  switch (r) {
    case Reduction::none: return "none";
    case Reduction::token_mean: return "token_mean";
    case Reduction::sample_mean: return "sample_mean";
    case Reduction::sequence_sum: return "sequence_sum";
  }
  return "?";
}

// Checks logits [..., V] against targets [...] (i64, same device) and every target in [0, V) or
// ignore_index. Returns the targets on the host (for the valid-token counts of the reductions).
std::vector<int64_t> check_logits_targets(const char* op, const Tensor& logits,
                                          const Tensor& targets, int64_t ignore_index) {
  check_defined(op, logits, "logits");
  check_defined(op, targets, "targets");
  check_float_inputs(op, {&logits});
  LETHE_CHECK(logits.dim() >= 1, op, ": logits must be [..., vocab], got ", logits.str());
  LETHE_CHECK(targets.dtype() == DType::i64, op, ": targets must be i64, got ", targets.str());
  LETHE_CHECK(targets.device() == logits.device(), op, ": device mismatch, logits ", logits.str(),
              " vs targets ", targets.str());
  Shape lead(logits.shape().begin(), logits.shape().end() - 1);
  LETHE_CHECK(targets.shape() == lead, op, ": targets ", targets.str(), " must have shape ",
              shape_str(lead), " (logits ", logits.str(), " without the vocab dim)");
  const int64_t V = logits.shape().back();
  LETHE_CHECK(V > 0 || targets.numel() == 0, op, ": logits ", logits.str(),
              " have an empty vocab dim");
  std::vector<int64_t> t = targets.to_int_vector();
  for (size_t i = 0; i < t.size(); ++i) {
    LETHE_CHECK(t[i] == ignore_index || (t[i] >= 0 && t[i] < V), op, ": target ", t[i],
                " at position ", index_string(static_cast<int64_t>(i), targets.shape()),
                " is outside [0, ", V, ") and is not ignore_index ", ignore_index);
  }
  return t;
}

// Per-token losses [targets shape] from the fused kernel; the node's backward re-reads the
// logits (softmax is never stored).
struct CrossEntropyBackward : Node {
  Tensor logits;   // contiguous [rows, V]
  Tensor targets;  // contiguous i64 [rows]
  Tensor weights;  // contiguous f32 [rows] or undefined
  Tensor lse;      // f32 [rows]
  Shape logits_shape;
  int64_t ignore_index = -100;
  kernels::CrossEntropyMode mode = kernels::CrossEntropyMode::nll;
  double c = 1.0;
  const char* name() const override { return "CrossEntropyBackward"; }
  std::vector<Tensor> apply(const Tensor& g_in) override {
    check_not_released(*this);
    Tensor g = g_in.contiguous();
    Tensor dlogits = Tensor::empty(logits.shape(), logits.dtype(), logits.device());
    if (dlogits.numel()) {
      kernels::CrossEntropyBackwardArgs b;
      b.fwd.dtype = logits.dtype();
      b.fwd.rows = logits.shape()[0];
      b.fwd.vocab = logits.shape()[1];
      b.fwd.logits = logits.data_ptr();
      b.fwd.targets = targets.data<int64_t>();
      b.fwd.weights = weights.defined() ? weights.data<float>() : nullptr;
      b.fwd.ignore_index = ignore_index;
      b.fwd.mode = mode;
      b.fwd.c = c;
      b.fwd.lse = lse.data<float>();
      b.dloss = g.data_ptr();
      b.dlogits = dlogits.data_ptr();
      backend(logits.device()).cross_entropy_backward(b);
    }
    return {dlogits.view(logits_shape)};
  }
  void release_saved() override {
    logits = Tensor();
    targets = Tensor();
    weights = Tensor();
    lse = Tensor();
  }
};

// The weighted per-token losses, shaped like targets (differentiable w.r.t. logits).
Tensor per_token_loss(const Tensor& logits_in, const Tensor& targets_in, const Tensor& weights_in,
                      int64_t ignore_index, kernels::CrossEntropyMode mode, double c) {
  const int64_t V = logits_in.shape().back();
  const int64_t rows = targets_in.numel();
  Tensor logits = logits_in.detach().contiguous().view({rows, V});
  Tensor targets = targets_in.contiguous().view({rows});
  Tensor weights = weights_in.defined() ? weights_in.detach().contiguous().view({rows}) : Tensor();
  Tensor loss = Tensor::empty({rows}, logits.dtype(), logits.device());
  Tensor lse = Tensor::empty({rows}, DType::f32, logits.device());
  if (rows) {
    kernels::CrossEntropyArgs a;
    a.dtype = logits.dtype();
    a.rows = rows;
    a.vocab = V;
    a.logits = logits.data_ptr();
    a.targets = targets.data<int64_t>();
    a.weights = weights.defined() ? weights.data<float>() : nullptr;
    a.ignore_index = ignore_index;
    a.mode = mode;
    a.c = c;
    a.loss = loss.data_ptr();
    a.lse = lse.data<float>();
    backend(logits.device()).cross_entropy_forward(a);
  }
  loss = loss.view(targets_in.shape());
  if (any_requires_grad({&logits_in})) {
    auto node = std::make_shared<CrossEntropyBackward>();
    node->logits = logits;
    node->targets = targets.detach();
    node->weights = weights;
    node->lse = lse;
    node->logits_shape = logits_in.shape();
    node->ignore_index = ignore_index;
    node->mode = mode;
    node->c = c;
    attach_node(loss, node, {&logits_in});
  }
  return loss;
}

}  // namespace

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, const CrossEntropyOptions& o) {
  const char* op = "cross_entropy";
  std::vector<int64_t> t = check_logits_targets(op, logits, targets, o.ignore_index);
  if (o.weights.defined()) {
    const Tensor& w = o.weights;
    LETHE_CHECK(w.dtype() == DType::f32, op, ": weights must be f32, got ", w.str());
    LETHE_CHECK(w.shape() == targets.shape(), op, ": weights ", w.str(),
                " must have the shape of targets ", targets.str());
    LETHE_CHECK(w.device() == logits.device(), op, ": device mismatch, logits ", logits.str(),
                " vs weights ", w.str());
  }
  if (o.mode == LossMode::unlikelihood) {
    LETHE_CHECK(o.unlikelihood_c > 0.0 && o.unlikelihood_c <= 1.0, op,
                ": unlikelihood_c must be in (0, 1], got ", o.unlikelihood_c);
  }
  const bool per_row =
      o.reduction == Reduction::sample_mean || o.reduction == Reduction::sequence_sum;
  if (per_row) {
    LETHE_CHECK(targets.dim() >= 2, op, ": reduction ", reduction_name(o.reduction),
                " needs targets [rows..., T] (at least 2-D), got ", targets.str());
  }
  auto mode = o.mode == LossMode::nll ? kernels::CrossEntropyMode::nll
                                      : kernels::CrossEntropyMode::unlikelihood;
  Tensor loss = per_token_loss(logits, targets, o.weights, o.ignore_index, mode, o.unlikelihood_c);

  switch (o.reduction) {
    case Reduction::none: return loss;
    case Reduction::token_mean: {
      // Sum over valid tokens / their count. With no valid token the result is 0 (and so is the
      // gradient) where PyTorch returns nan: an all-padding micro-batch contributes nothing.
      int64_t valid = 0;
      for (int64_t v : t) valid += v != o.ignore_index;
      return scale(sum(loss), valid ? 1.0 / static_cast<double>(valid) : 0.0);
    }
    case Reduction::sequence_sum: return sum(loss, -1);
    case Reduction::sample_mean: {
      // Each row's sum / its valid count, then the mean over rows with ≥ 1 valid token (0 when
      // there is none). Rows without valid tokens get factor 0.
      const int64_t T = targets.shape().back();
      const int64_t nrows = T ? static_cast<int64_t>(t.size()) / T : 0;
      std::vector<double> factor(static_cast<size_t>(nrows), 0.0);
      int64_t rows_with_tokens = 0;
      for (int64_t r = 0; r < nrows; ++r) {
        int64_t cnt = 0;
        for (int64_t j = 0; j < T; ++j) cnt += t[r * T + j] != o.ignore_index;
        if (cnt) {
          factor[r] = 1.0 / static_cast<double>(cnt);
          ++rows_with_tokens;
        }
      }
      Shape row_shape(targets.shape().begin(), targets.shape().end() - 1);
      Tensor f = Tensor::from_vector(factor, row_shape, logits.dtype(), logits.device());
      Tensor row_means = mul(sum(loss, -1), f);
      return scale(sum(row_means),
                   rows_with_tokens ? 1.0 / static_cast<double>(rows_with_tokens) : 0.0);
    }
  }
  LETHE_FAIL(op, ": unknown reduction");
}

Tensor token_logprobs(const Tensor& logits, const Tensor& targets, int64_t ignore_index) {
  check_logits_targets("token_logprobs", logits, targets, ignore_index);
  // log p = −nll: the nll kernel with weight −1 (ignored positions stay 0).
  Tensor w = Tensor::full(targets.shape(), -1.0, DType::f32, logits.device());
  return per_token_loss(logits, targets, w, ignore_index, kernels::CrossEntropyMode::nll, 1.0);
}

namespace {

struct KlDivBackward : Node {
  Tensor ref, x;  // contiguous [rows, V]
  Shape shape;
  bool need_ref = false, need_x = false;
  const char* name() const override { return "KlDivBackward"; }
  std::vector<Tensor> apply(const Tensor& g_in) override {
    check_not_released(*this);
    Tensor g = g_in.contiguous();
    Tensor dref, dx;
    if (need_ref) dref = Tensor::empty(ref.shape(), ref.dtype(), ref.device());
    if (need_x) dx = Tensor::empty(x.shape(), x.dtype(), x.device());
    if (x.numel()) {
      backend(x.device())
          .kl_div_backward(x.dtype(), x.shape()[0], x.shape()[1], ref.data_ptr(), x.data_ptr(),
                           g.data_ptr(), need_x ? dx.data_ptr() : nullptr,
                           need_ref ? dref.data_ptr() : nullptr);
    }
    if (dref.defined()) dref = dref.view(shape);
    if (dx.defined()) dx = dx.view(shape);
    return {dref, dx};
  }
  void release_saved() override {
    ref = Tensor();
    x = Tensor();
  }
};

}  // namespace

Tensor kl_div(const Tensor& ref_logits, const Tensor& logits) {
  const char* op = "kl_div";
  check_defined(op, ref_logits, "ref_logits");
  check_defined(op, logits, "logits");
  check_float_inputs(op, {&ref_logits, &logits});
  LETHE_CHECK(logits.dim() >= 1, op, ": logits must be [..., vocab], got ", logits.str());
  LETHE_CHECK(ref_logits.shape() == logits.shape(), op, ": shape mismatch, ref_logits ",
              ref_logits.str(), " vs logits ", logits.str());
  const int64_t V = logits.shape().back();
  const int64_t rows = V ? logits.numel() / V : 0;
  Shape out_shape(logits.shape().begin(), logits.shape().end() - 1);
  LETHE_CHECK(V > 0 || shape_numel(out_shape) == 0, op, ": logits ", logits.str(),
              " have an empty vocab dim");
  Tensor ref = ref_logits.detach().contiguous().view({rows, V});
  Tensor x = logits.detach().contiguous().view({rows, V});
  Tensor out = Tensor::empty(out_shape, logits.dtype(), logits.device());
  if (rows) {
    backend(x.device())
        .kl_div_forward(x.dtype(), rows, V, ref.data_ptr(), x.data_ptr(), out.data_ptr());
  }
  if (any_requires_grad({&ref_logits, &logits})) {
    auto node = std::make_shared<KlDivBackward>();
    node->ref = ref;
    node->x = x;
    node->shape = logits.shape();
    node->need_ref = ref_logits.requires_grad();
    node->need_x = logits.requires_grad();
    attach_node(out, node, {&ref_logits, &logits});
  }
  return out;
}

}  // namespace lethe
