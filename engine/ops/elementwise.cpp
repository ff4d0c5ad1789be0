// Elementwise ops: broadcasting add/sub/mul/div, scale, unary maps, dropout, and the in-place
// axpy_ and scale_.
#include "engine/ops/common.h"

namespace lethe {

using namespace ops_detail;
using kernels::BinaryOp;
using kernels::UnaryOp;

namespace {

Tensor binary_raw(BinaryOp op, const Tensor& a, const Tensor& b, const char* name) {
  Shape out_shape = broadcast_shapes(name, a, b);
  Tensor out = Tensor::empty(out_shape, a.dtype(), a.device());
  if (out.numel()) {
    backend(a.device())
        .binary(op, a.dtype(), out.data_ptr(), layout_of(out), a.data_ptr(),
                broadcast_layout(a, out_shape), b.data_ptr(), broadcast_layout(b, out_shape));
  }
  return out;
}

struct BinaryBackward : Node {
  BinaryOp op;
  Tensor a, b;  // saved only where the derivative needs them
  Shape a_shape, b_shape;
  bool need_a = false, need_b = false;
  const char* name() const override {
    switch (op) {
      case BinaryOp::add: return "AddBackward";
      case BinaryOp::sub: return "SubBackward";
      case BinaryOp::mul: return "MulBackward";
      case BinaryOp::div: return "DivBackward";
    }
    return "BinaryBackward";
  }
  std::vector<Tensor> apply(const Tensor& g) override {
    Tensor ga, gb;
    switch (op) {
      case BinaryOp::add:
        if (need_a) ga = g;
        if (need_b) gb = g;
        break;
      case BinaryOp::sub:
        if (need_a) ga = g;
        if (need_b) gb = neg(g);
        break;
      case BinaryOp::mul:
        if (need_a) ga = mul(g, b);
        if (need_b) gb = mul(g, a);
        break;
      case BinaryOp::div:
        if (need_a) ga = div(g, b);
        if (need_b) gb = neg(div(mul(g, a), mul(b, b)));
        break;
    }
    if (ga.defined()) ga = sum_to_shape(ga, a_shape);
    if (gb.defined()) gb = sum_to_shape(gb, b_shape);
    return {ga, gb};
  }
  void release_saved() override {
    a = Tensor();
    b = Tensor();
  }
};

Tensor binary_op(BinaryOp op, const Tensor& a, const Tensor& b, const char* name) {
  check_defined(name, a, "first input");
  check_defined(name, b, "second input");
  check_float_inputs(name, {&a, &b});
  Tensor out = binary_raw(op, a, b, name);
  if (any_requires_grad({&a, &b})) {
    auto node = std::make_shared<BinaryBackward>();
    node->op = op;
    node->a_shape = a.shape();
    node->b_shape = b.shape();
    node->need_a = a.requires_grad();
    node->need_b = b.requires_grad();
    if (op == BinaryOp::mul || op == BinaryOp::div) {
      node->a = a.detach();
      node->b = b.detach();
    }
    attach_node(out, node, {&a, &b});
  }
  return out;
}

struct ScaleBackward : Node {
  double s = 1;
  const char* name() const override { return "ScaleBackward"; }
  std::vector<Tensor> apply(const Tensor& g) override { return {scale(g, s)}; }
};

struct AddScalarBackward : Node {
  const char* name() const override { return "AddScalarBackward"; }
  std::vector<Tensor> apply(const Tensor& g) override { return {g}; }
};

struct UnaryBackward : Node {
  UnaryOp op;
  Tensor x, y;
  const char* name() const override {
    static const char* names[] = {
        "NegBackward",  "ReluBackward",   "GeluBackward", "ExpBackward",     "LogBackward",
        "SqrtBackward", "SquareBackward", "TanhBackward", "SigmoidBackward", "LogSigmoidBackward"};
    return names[static_cast<int>(op)];
  }
  std::vector<Tensor> apply(const Tensor& g_in) override {
    check_not_released(*this);
    Tensor g = g_in.contiguous();
    Tensor dx = Tensor::empty(g.shape(), g.dtype(), g.device());
    if (dx.numel()) {
      backend(g.device())
          .unary_backward(op, g.dtype(), g.numel(), x.defined() ? x.data_ptr() : nullptr,
                          y.defined() ? y.data_ptr() : nullptr, g.data_ptr(), dx.data_ptr());
    }
    return {dx};
  }
  void release_saved() override {
    x = Tensor();
    y = Tensor();
  }
};

Tensor unary_op(UnaryOp op, const Tensor& x_in, const char* name) {
  check_defined(name, x_in, "input");
  check_float_inputs(name, {&x_in});
  Tensor x = x_in.contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (y.numel()) backend(x.device()).unary(op, x.dtype(), x.numel(), x.data_ptr(), y.data_ptr());
  if (any_requires_grad({&x_in})) {
    auto node = std::make_shared<UnaryBackward>();
    node->op = op;
    bool needs_y =
        op == UnaryOp::exp || op == UnaryOp::sqrt || op == UnaryOp::tanh || op == UnaryOp::sigmoid;
    if (needs_y) {
      node->y = y.detach();
    } else if (op != UnaryOp::neg) {
      node->x = x.detach();
    }
    attach_node(y, node, {&x_in});
  }
  return y;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  return binary_op(BinaryOp::add, a, b, "add");
}

namespace ops_detail {

void attach_add_node(Tensor& out, const Tensor& a, const Tensor& b) {
  auto node = std::make_shared<BinaryBackward>();
  node->op = BinaryOp::add;
  node->a_shape = a.shape();
  node->b_shape = b.shape();
  node->need_a = a.requires_grad();
  node->need_b = b.requires_grad();
  attach_node(out, node, {&a, &b});
}

}  // namespace ops_detail
Tensor sub(const Tensor& a, const Tensor& b) {
  return binary_op(BinaryOp::sub, a, b, "sub");
}
Tensor mul(const Tensor& a, const Tensor& b) {
  return binary_op(BinaryOp::mul, a, b, "mul");
}
Tensor div(const Tensor& a, const Tensor& b) {
  return binary_op(BinaryOp::div, a, b, "div");
}

Tensor scale(const Tensor& x_in, double s) {
  check_defined("scale", x_in, "input");
  check_float_inputs("scale", {&x_in});
  Tensor x = x_in.contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (y.numel())
    backend(x.device()).axpby(x.dtype(), x.numel(), s, x.data_ptr(), 0.0, y.data_ptr());
  if (any_requires_grad({&x_in})) {
    auto node = std::make_shared<ScaleBackward>();
    node->s = s;
    attach_node(y, node, {&x_in});
  }
  return y;
}

Tensor& axpy_(Tensor& y, double a, const Tensor& x) {
  check_defined("axpy_", y, "y");
  check_defined("axpy_", x, "x");
  check_inplace(y, "axpy_");
  check_float_inputs("axpy_", {&y, &x});
  LETHE_CHECK(x.shape() == y.shape(), "axpy_: x ", x.str(), " does not match y ", y.str());
  LETHE_CHECK(y.is_contiguous(), "axpy_: y ", y.str(), " is not contiguous");
  const Tensor xc = x.detach().contiguous();
  if (y.numel())
    backend(y.device()).axpby(y.dtype(), y.numel(), a, xc.data_ptr(), 1.0, y.data_ptr());
  return y;
}

Tensor& scale_(Tensor& x, double a) {
  check_defined("scale_", x, "x");
  check_inplace(x, "scale_");
  check_float_inputs("scale_", {&x});
  LETHE_CHECK(x.is_contiguous(), "scale_: x ", x.str(), " is not contiguous");
  if (x.numel())
    backend(x.device()).axpby(x.dtype(), x.numel(), a, x.data_ptr(), 0.0, x.data_ptr());
  return x;
}

Tensor add_scalar(const Tensor& x_in, double s) {
  check_defined("add_scalar", x_in, "input");
  check_float_inputs("add_scalar", {&x_in});
  Tensor y;
  {
    NoGradGuard ng;
    y = binary_raw(BinaryOp::add, x_in, Tensor::scalar(s, x_in.dtype(), x_in.device()),
                   "add_scalar");
  }
  if (any_requires_grad({&x_in})) attach_node(y, std::make_shared<AddScalarBackward>(), {&x_in});
  return y;
}

Tensor neg(const Tensor& x) {
  return unary_op(UnaryOp::neg, x, "neg");
}
Tensor relu(const Tensor& x) {
  return unary_op(UnaryOp::relu, x, "relu");
}
Tensor gelu(const Tensor& x) {
  return unary_op(UnaryOp::gelu, x, "gelu");
}
Tensor exp(const Tensor& x) {
  return unary_op(UnaryOp::exp, x, "exp");
}
Tensor log(const Tensor& x) {
  return unary_op(UnaryOp::log, x, "log");
}
Tensor sqrt(const Tensor& x) {
  return unary_op(UnaryOp::sqrt, x, "sqrt");
}
Tensor square(const Tensor& x) {
  return unary_op(UnaryOp::square, x, "square");
}
Tensor tanh(const Tensor& x) {
  return unary_op(UnaryOp::tanh, x, "tanh");
}
Tensor sigmoid(const Tensor& x) {
  return unary_op(UnaryOp::sigmoid, x, "sigmoid");
}
Tensor log_sigmoid(const Tensor& x) {
  return unary_op(UnaryOp::log_sigmoid, x, "log_sigmoid");
}
Tensor silu(const Tensor& x) {
  return unary_op(UnaryOp::silu, x, "silu");
}

namespace {

// x * mask with mask = dropout_mask(seed, offset, p), regenerated where needed: the forward frees
// its mask at once and the backward draws the same one again, so no [numel] mask lives between
// the two passes (the counter-based generator makes the draw a pure function of the element).
Tensor times_dropout_mask(const Tensor& x_in, double p, uint64_t seed, uint64_t offset) {
  Tensor x = x_in.contiguous();
  Tensor mask = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.numel()) {
    kernels::Backend& be = backend(x.device());
    be.dropout_mask(x.dtype(), mask.data_ptr(), mask.numel(), seed, offset, p);
    be.binary(BinaryOp::mul, x.dtype(), y.data_ptr(), layout_of(y), x.data_ptr(), layout_of(x),
              mask.data_ptr(), layout_of(mask));
  }
  return y;
}

struct DropoutBackward : Node {
  double p = 0;
  uint64_t seed = 0, offset = 0;
  const char* name() const override { return "DropoutBackward"; }
  std::vector<Tensor> apply(const Tensor& g) override {
    return {times_dropout_mask(g, p, seed, offset)};
  }
};

// out = dropout(x) + residual (add_layer_norm's sum): x gets the masked gradient, residual g.
struct DropoutAddBackward : Node {
  double p = 0;
  uint64_t seed = 0, offset = 0;
  bool need_x = false, need_residual = false;
  const char* name() const override { return "DropoutAddBackward"; }
  std::vector<Tensor> apply(const Tensor& g) override {
    return {need_x ? times_dropout_mask(g, p, seed, offset) : Tensor(),
            need_residual ? g : Tensor()};
  }
};

}  // namespace

namespace ops_detail {

void attach_dropout_add_node(Tensor& out, const Tensor& x, const Tensor& residual, double p,
                             uint64_t seed, uint64_t offset) {
  auto node = std::make_shared<DropoutAddBackward>();
  node->p = p;
  node->seed = seed;
  node->offset = offset;
  node->need_x = x.requires_grad();
  node->need_residual = residual.requires_grad();
  attach_node(out, node, {&x, &residual});
}

}  // namespace ops_detail

Tensor dropout(const Tensor& x, double p, bool training, uint64_t seed, uint64_t offset) {
  check_defined("dropout", x, "input");
  LETHE_CHECK(p >= 0.0 && p < 1.0, "dropout: p must be in [0, 1), got ", p);
  if (!training || p == 0.0) return x;
  check_float_inputs("dropout", {&x});
  Tensor y = times_dropout_mask(x, p, seed, offset);
  if (any_requires_grad({&x})) {
    auto node = std::make_shared<DropoutBackward>();
    node->p = p;
    node->seed = seed;
    node->offset = offset;
    attach_node(y, node, {&x});
  }
  return y;
}

}  // namespace lethe
