// layer_norm, softmax and log_softmax over the last dim: argument checks, one backend kernel each
// way, and one autograd node per op. No math here beyond shapes.
#include <cmath>

#include "engine/ops/common.h"

namespace lethe {

using namespace ops_detail;

namespace {

std::string brief(const Tensor& t) {
  return std::string(dtype_name(t.dtype())) + shape_str(t.shape());
}

struct LayerNormBackward : Node {
  Tensor x, weight, mean,
      rstd;  // x contiguous; mean/rstd f64 [rows] (the backend keeps row statistics as double)
  int64_t rows = 0, cols = 0;
  bool need_x = false, need_w = false, need_b = false;
  const char* name() const override { return "LayerNormBackward"; }
  std::vector<Tensor> apply(const Tensor& g_in) override {
    check_not_released(*this);
    Tensor g = g_in.contiguous();
    Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
    // The kernel accumulates parameter gradients, so they start from zero.
    Tensor dw = need_w ? Tensor::zeros({cols}, x.dtype(), x.device()) : Tensor();
    Tensor db = need_b ? Tensor::zeros({cols}, x.dtype(), x.device()) : Tensor();
    if (rows > 0) {
      backend(x.device())
          .layernorm_backward(
              x.dtype(), rows, cols, x.data_ptr(), weight.defined() ? weight.data_ptr() : nullptr,
              mean.data<double>(), rstd.data<double>(), g.data_ptr(), dx.data_ptr(),
              dw.defined() ? dw.data_ptr() : nullptr, db.defined() ? db.data_ptr() : nullptr);
    }
    return {need_x ? dx : Tensor(), dw, db};
  }
  void release_saved() override { x = weight = mean = rstd = Tensor(); }
};

struct RmsNormBackward : Node {
  Tensor x, weight, rstd;  // x contiguous; rstd f64 [rows]
  int64_t rows = 0, cols = 0;
  bool need_x = false, need_w = false;
  const char* name() const override { return "RmsNormBackward"; }
  std::vector<Tensor> apply(const Tensor& g_in) override {
    check_not_released(*this);
    Tensor g = g_in.contiguous();
    Tensor dx = need_x ? Tensor::empty(x.shape(), x.dtype(), x.device()) : Tensor();
    Tensor dw = need_w ? Tensor::zeros({cols}, x.dtype(), x.device()) : Tensor();  // accumulated
    if (rows > 0) {
      backend(x.device())
          .rmsnorm_backward(x.dtype(), rows, cols, x.data_ptr(),
                            weight.defined() ? weight.data_ptr() : nullptr, rstd.data<double>(),
                            g.data_ptr(), dx.defined() ? dx.data_ptr() : nullptr,
                            dw.defined() ? dw.data_ptr() : nullptr);
    }
    return {dx, dw};
  }
  void release_saved() override { x = weight = rstd = Tensor(); }
};

struct SoftmaxBackward : Node {
  Tensor y;  // the output (softmax or log_softmax), contiguous
  bool log = false;
  const char* name() const override { return log ? "LogSoftmaxBackward" : "SoftmaxBackward"; }
  std::vector<Tensor> apply(const Tensor& g_in) override {
    check_not_released(*this);
    Tensor g = g_in.contiguous();
    Tensor dx = Tensor::empty(y.shape(), y.dtype(), y.device());
    if (y.numel()) {
      int64_t cols = y.size(-1);
      backend(y.device())
          .softmax_backward(y.dtype(), y.numel() / cols, cols, y.data_ptr(), g.data_ptr(),
                            dx.data_ptr(), log);
    }
    return {dx};
  }
  void release_saved() override { y = Tensor(); }
};

Tensor softmax_impl(const Tensor& x_in, bool log) {
  const char* op = log ? "log_softmax" : "softmax";
  check_defined(op, x_in, "input");
  check_float_inputs(op, {&x_in});
  LETHE_CHECK(x_in.dim() >= 1, op, ": input must have at least 1 dim, got a scalar ", x_in.str());
  Tensor x = x_in.detach().contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (y.numel()) {
    int64_t cols = x.size(-1);
    backend(x.device())
        .softmax_forward(x.dtype(), x.numel() / cols, cols, x.data_ptr(), y.data_ptr(), log);
  }
  if (any_requires_grad({&x_in})) {
    auto node = std::make_shared<SoftmaxBackward>();
    node->y = y.detach();
    node->log = log;
    attach_node(y, node, {&x_in});
  }
  return y;
}

}  // namespace

namespace {

// layer_norm's checks, shared with add_layer_norm (`op` names the caller).
void check_layer_norm(const char* op, const Tensor& x_in, const Tensor& weight, const Tensor& bias,
                      double eps) {
  check_defined(op, x_in, "input");
  check_float_inputs(op, {&x_in, &weight, &bias});
  LETHE_CHECK(x_in.dim() >= 1, op, ": input must have at least 1 dim, got a scalar ", x_in.str());
  const int64_t cols = x_in.size(-1);
  LETHE_CHECK(cols > 0, op, ": input ", brief(x_in), " has an empty last dim");
  for (const auto& [t, what] : {std::pair{&weight, "weight"}, std::pair{&bias, "bias"}}) {
    if (!t->defined()) continue;
    LETHE_CHECK(t->dim() == 1 && t->shape()[0] == cols, op, ": ", what, " ", brief(*t),
                " must have shape [", cols, "] to match the last dim of input ", brief(x_in));
  }
  LETHE_CHECK(std::isfinite(eps) && eps >= 0.0, op, ": eps must be finite and >= 0, got ", eps);
}

// The normalisation's graph node: y's gradient flows back to `x_in` (whose contiguous values the
// kernel read as `x`), weight and bias.
void attach_layer_norm_node(Tensor& y, const Tensor& x_in, const Tensor& x, const Tensor& weight,
                            const Tensor& w, const Tensor& bias, const Tensor& mean,
                            const Tensor& rstd) {
  auto node = std::make_shared<LayerNormBackward>();
  node->x = x;
  node->weight = w;
  node->mean = mean;
  node->rstd = rstd;
  node->cols = x.size(-1);
  node->rows = x.numel() / node->cols;
  node->need_x = x_in.requires_grad();
  node->need_w = weight.defined() && weight.requires_grad();
  node->need_b = bias.defined() && bias.requires_grad();
  attach_node(y, node, {&x_in, &weight, &bias});
}

}  // namespace

Tensor layer_norm(const Tensor& x_in, const Tensor& weight, const Tensor& bias, double eps) {
  check_layer_norm("layer_norm", x_in, weight, bias, eps);
  const int64_t cols = x_in.size(-1), rows = x_in.numel() / cols;
  Tensor x, w, b;
  {
    NoGradGuard ng;
    x = x_in.detach().contiguous();
    if (weight.defined()) w = weight.detach().contiguous();
    if (bias.defined()) b = bias.detach().contiguous();
  }
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor mean = Tensor::empty({rows}, DType::f64, x.device());
  Tensor rstd = Tensor::empty({rows}, DType::f64, x.device());
  if (rows > 0) {
    backend(x.device())
        .layernorm_forward(x.dtype(), rows, cols, x.data_ptr(),
                           w.defined() ? w.data_ptr() : nullptr,
                           b.defined() ? b.data_ptr() : nullptr, eps, y.data_ptr(),
                           mean.data<double>(), rstd.data<double>());
  }
  if (any_requires_grad({&x_in, &weight, &bias}))
    attach_layer_norm_node(y, x_in, x, weight, w, bias, mean, rstd);
  return y;
}

Tensor rms_norm(const Tensor& x_in, const Tensor& weight, double eps) {
  check_layer_norm("rms_norm", x_in, weight, Tensor(), eps);
  const int64_t cols = x_in.size(-1), rows = x_in.numel() / cols;
  Tensor x, w;
  {
    NoGradGuard ng;
    x = x_in.detach().contiguous();
    if (weight.defined()) w = weight.detach().contiguous();
  }
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor rstd = Tensor::empty({rows}, DType::f64, x.device());
  if (rows > 0)
    backend(x.device())
        .rmsnorm_forward(x.dtype(), rows, cols, x.data_ptr(), w.defined() ? w.data_ptr() : nullptr,
                         eps, y.data_ptr(), rstd.data<double>());
  if (any_requires_grad({&x_in, &weight})) {
    auto node = std::make_shared<RmsNormBackward>();
    node->x = x;
    node->weight = w;
    node->rstd = rstd;
    node->rows = rows;
    node->cols = cols;
    node->need_x = x_in.requires_grad();
    node->need_w = weight.defined() && weight.requires_grad();
    attach_node(y, node, {&x_in, &weight});
  }
  return y;
}

ResidualNorm add_layer_norm(const Tensor& x_in, const Tensor& residual_in, const Tensor& weight,
                            const Tensor& bias, double eps, const DropoutSpec& drop) {
  check_layer_norm("add_layer_norm", x_in, weight, bias, eps);
  check_defined("add_layer_norm", residual_in, "residual");
  check_float_inputs("add_layer_norm", {&x_in, &residual_in});
  LETHE_CHECK(residual_in.shape() == x_in.shape() && residual_in.device() == x_in.device(),
              "add_layer_norm: residual ", brief(residual_in), " on ", residual_in.device().str(),
              " must match input ", brief(x_in), " on ", x_in.device().str());
  LETHE_CHECK(drop.p >= 0.0 && drop.p < 1.0, "add_layer_norm: dropout p must be in [0, 1), got ",
              drop.p);
  const int64_t cols = x_in.size(-1), rows = x_in.numel() / cols;
  Tensor x, r, w, b;
  {
    NoGradGuard ng;
    x = x_in.detach().contiguous();
    r = residual_in.detach().contiguous();
    if (weight.defined()) w = weight.detach().contiguous();
    if (bias.defined()) b = bias.detach().contiguous();
  }
  ResidualNorm out;
  out.sum = Tensor::empty(x.shape(), x.dtype(), x.device());
  out.normed = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor mean = Tensor::empty({rows}, DType::f64, x.device());
  Tensor rstd = Tensor::empty({rows}, DType::f64, x.device());
  if (rows > 0) {
    backend(x.device())
        .add_layernorm_forward(
            x.dtype(), rows, cols, x.data_ptr(), r.data_ptr(), w.defined() ? w.data_ptr() : nullptr,
            b.defined() ? b.data_ptr() : nullptr, eps, out.sum.data_ptr(), out.normed.data_ptr(),
            mean.data<double>(), rstd.data<double>(), drop.p, drop.seed, drop.offset);
  }
  // The graph of (dropout,) add then layer_norm: the sum's node passes its gradient to residual
  // and (masked) to x; the norm's reads the sum, so the sum's gradient is what flows back from
  // both of its uses.
  if (any_requires_grad({&x_in, &residual_in})) {
    if (drop.p > 0)
      attach_dropout_add_node(out.sum, x_in, residual_in, drop.p, drop.seed, drop.offset);
    else
      attach_add_node(out.sum, x_in, residual_in);
  }
  if (any_requires_grad({&out.sum, &weight, &bias}))
    attach_layer_norm_node(out.normed, out.sum, out.sum.detach(), weight, w, bias, mean, rstd);
  return out;
}

Tensor softmax(const Tensor& x) {
  return softmax_impl(x, false);
}
Tensor log_softmax(const Tensor& x) {
  return softmax_impl(x, true);
}

}  // namespace lethe
