// matmul (batched, broadcasting) and linear (x w^T + b), both on the backend GEMM; in bf16 matmul
// precision every GEMM of forward and backward takes bf16 operands with f32 accumulation.
#include <cmath>

#include "engine/ops/common.h"
#include "engine/ops/gemm_args.h"

namespace lethe {

using namespace ops_detail;

namespace {
thread_local MatmulPrecision g_precision = MatmulPrecision::f32;

// A 3-D [batch, rows, cols] operand as the GEMM reads it: t itself when it is dense, its
// last-two-dims transpose (read transposed) when that is dense, else a dense copy.
GemmOperand as_operand(const Tensor& t) {
  int64_t r = t.shape()[1], c = t.shape()[2];
  const Shape& st = t.strides();
  bool batch_ok = t.shape()[0] == 1 || st[0] == r * c;
  if (batch_ok && (st[2] == 1 || c == 1) && (st[1] == c || r == 1)) return {t, false};
  if (batch_ok && (st[1] == 1 || r == 1) && (st[2] == r || c == 1))
    return {t.transpose(1, 2), true};
  return {t.contiguous(), false};
}

// c [batch, m, n] = alpha · op(A) op(B) + beta · c, a [batch, m, k] and b [batch, k, n] (any
// strides), c contiguous; k > 0.
void gemm_into(Tensor& c, const Tensor& a, const Tensor& b, double alpha, double beta) {
  backend(c.device()).gemm(gemm_args(c, as_operand(a), as_operand(b), alpha, beta));
}

// C [batch, m, n] = op(A) op(B) where a is [batch, m, k] and b is [batch, k, n] (any strides).
Tensor batched_gemm(const Tensor& a, const Tensor& b) {
  const int64_t batch = a.shape()[0], m = a.shape()[1], k = a.shape()[2], n = b.shape()[2];
  Tensor c = Tensor::empty({batch, m, n}, a.dtype(), a.device());
  if (c.numel() == 0) return c;
  if (k == 0) {
    c.detach().zero_();
    return c;
  }
  gemm_into(c, a, b, 1.0, 0.0);
  return c;
}

// c [m, n] += alpha · op(a) op(b) for 2-D operands of any strides (β = 1: accumulates into c,
// which must be contiguous).
void gemm_accumulate(Tensor& c, const Tensor& a, const Tensor& b, double alpha) {
  if (c.numel() == 0 || a.shape()[1] == 0) return;
  Tensor c3 = c.unsqueeze(0);
  gemm_into(c3, a.unsqueeze(0), b.unsqueeze(0), alpha, 1.0);
}

// 2-D product into a new contiguous tensor.
Tensor gemm2d(const Tensor& a, const Tensor& b) {
  return batched_gemm(a.unsqueeze(0), b.unsqueeze(0)).reshape({a.shape()[0], b.shape()[1]});
}

struct MatmulBackward : Node {
  Tensor a, b;  // broadcast, 3-D views [batch, m, k] / [batch, k, n]
  Shape a_shape, b_shape, a_expanded, b_expanded;
  bool need_a = false, need_b = false;
  const char* name() const override { return "MatmulBackward"; }
  std::vector<Tensor> apply(const Tensor& g_in) override {
    check_not_released(*this);
    int64_t batch = a.shape()[0];
    Tensor g = g_in.reshape({batch, a.shape()[1], b.shape()[2]});
    Tensor ga, gb;
    if (need_a) {
      ga = batched_gemm(g, b.transpose(1, 2)).reshape(a_expanded);
      ga = sum_to_shape(ga, a_shape);
    }
    if (need_b) {
      gb = batched_gemm(a.transpose(1, 2), g).reshape(b_expanded);
      gb = sum_to_shape(gb, b_shape);
    }
    return {ga, gb};
  }
  void release_saved() override {
    a = Tensor();
    b = Tensor();
  }
};

}  // namespace

MatmulPrecision matmul_precision() {
  return g_precision;
}
void set_matmul_precision(MatmulPrecision p) {
  g_precision = p;
}

std::string cpu_gemm_description() {
  return kernels::cpu_gemm_description();
}

Tensor matmul(const Tensor& a, const Tensor& b) {
  check_defined("matmul", a, "a");
  check_defined("matmul", b, "b");
  check_float_inputs("matmul", {&a, &b});
  LETHE_CHECK(a.dim() >= 2 && b.dim() >= 2, "matmul: needs tensors of at least 2 dims, got ",
              a.str(), " and ", b.str());
  int64_t m = a.size(-2), k = a.size(-1), k2 = b.size(-2), n = b.size(-1);
  LETHE_CHECK(k == k2, "matmul: inner dimensions differ: ", a.str(), " @ ", b.str(), " (", k,
              " vs ", k2, ")");
  // Broadcast the leading (batch) dims.
  Shape la(a.shape().begin(), a.shape().end() - 2), lb(b.shape().begin(), b.shape().end() - 2);
  Tensor ta = Tensor::empty(la, DType::u8), tb = Tensor::empty(lb, DType::u8);  // shape carriers
  Shape lead = broadcast_shapes("matmul", ta, tb);
  Shape ea = lead, eb = lead;
  ea.insert(ea.end(), {m, k});
  eb.insert(eb.end(), {k, n});
  int64_t batch = shape_numel(lead);
  Tensor a3, b3;
  {
    NoGradGuard ng;
    Tensor ax = a.detach().expand(ea), bx = b.detach().expand(eb);
    // Keep strided 2-D/3-D operands as views so transposed inputs reach the GEMM without a copy.
    auto to3 = [&](const Tensor& t, const Tensor& orig, int64_t r, int64_t c) {
      if (t.shape() == orig.shape() && orig.dim() == 2) return t.unsqueeze(0);
      if (t.shape() == orig.shape() && orig.dim() == 3) return t;
      return t.contiguous().reshape({batch, r, c});
    };
    a3 = to3(ax, a, m, k);
    b3 = to3(bx, b, k, n);
  }
  Tensor c3 = batched_gemm(a3, b3);
  Shape out_shape = lead;
  out_shape.insert(out_shape.end(), {m, n});
  Tensor out = make_view(c3.storage(), 0, out_shape, contiguous_strides(out_shape), c3.dtype());
  if (any_requires_grad({&a, &b})) {
    auto node = std::make_shared<MatmulBackward>();
    node->a = a3;
    node->b = b3;
    node->a_shape = a.shape();
    node->b_shape = b.shape();
    node->a_expanded = ea;
    node->b_expanded = eb;
    node->need_a = a.requires_grad();
    node->need_b = b.requires_grad();
    attach_node(out, node, {&a, &b});
  }
  return out;
}

namespace {

struct LinearBackward : Node {
  Tensor x2, w;     // x as [N, in], w [out, in]
  Tensor relu_out;  // linear_relu: the output, whose zeros mask the incoming gradient
  Shape x_shape;
  bool need_x = false, need_w = false, need_b = false;
  const char* name() const override {
    return relu_out.defined() ? "LinearReluBackward" : "LinearBackward";
  }
  std::vector<Tensor> apply(const Tensor& g_in) override {
    check_not_released(*this);
    int64_t out_f = w.shape()[0];
    Tensor g = g_in.reshape({1, x2.shape()[0], out_f});
    if (relu_out.defined()) {  // g · [y > 0] (y > 0 exactly where the pre-activation is)
      const Tensor gc = g.contiguous();
      Tensor masked = Tensor::empty(gc.shape(), gc.dtype(), gc.device());
      backend(gc.device())
          .unary_backward(kernels::UnaryOp::relu, gc.dtype(), gc.numel(), relu_out.data_ptr(),
                          nullptr, gc.data_ptr(), masked.data_ptr());
      g = masked;
    }
    Tensor gx, gw, gb;
    if (need_x) gx = batched_gemm(g, w.unsqueeze(0)).reshape(x_shape);
    if (need_w) {
      // gᵀ x accumulated straight into the weight's bound grad (β = 1) when it has one.
      Tensor sink = leaf_grad_sink(*this, 1, w.shape(), w.dtype());
      const Tensor g2 = g.reshape({x2.shape()[0], out_f});
      if (sink.defined()) {
        gemm_accumulate(sink, g2.transpose(0, 1), x2, 1.0);
      } else {
        gw = gemm2d(g2.transpose(0, 1), x2);
      }
    }
    if (need_b) gb = sum(g.reshape({x2.shape()[0], out_f}), 0, false);
    return {gx, gw, gb};
  }
  void release_saved() override {
    x2 = Tensor();
    w = Tensor();
    relu_out = Tensor();
  }
};

// linear and linear_relu (op names the op in errors).
Tensor linear_impl(const char* op, const Tensor& x, const Tensor& w, const Tensor& b, bool relu) {
  check_defined(op, x, "input");
  check_defined(op, w, "weight");
  check_float_inputs(op, {&x, &w, &b});
  LETHE_CHECK(w.dim() == 2, op, ": weight must be [out, in], got ", w.str());
  LETHE_CHECK(x.dim() >= 1 && x.size(-1) == w.shape()[1], op, ": input ", x.str(),
              " does not end in in_features = ", w.shape()[1], " of weight ", w.str());
  int64_t in_f = w.shape()[1], out_f = w.shape()[0];
  if (b.defined())
    LETHE_CHECK(b.dim() == 1 && b.shape()[0] == out_f, op, ": bias ", b.str(),
                " does not match out_features = ", out_f);
  int64_t rows = x.numel() / std::max<int64_t>(in_f, 1);
  Tensor x2, wc, bc;
  {
    NoGradGuard ng;
    x2 = x.detach().reshape({rows, in_f});
    if (!x2.is_contiguous()) x2 = x2.contiguous();
    wc = w.detach().contiguous();
    if (b.defined()) bc = b.detach().contiguous();
  }
  Shape out_shape = x.shape();
  out_shape.back() = out_f;
  Tensor y = Tensor::empty(out_shape, x.dtype(), x.device());
  if (y.numel()) {
    if (in_f == 0) {
      y.detach().zero_();
      if (bc.defined()) y = add(y.detach(), bc);
      if (relu) y = lethe::relu(y.detach());
    } else {
      backend(x.device())
          .gemm(gemm_args(y.view({rows, out_f}), {x2}, {wc, true}, 1.0, 0.0, bc, relu));
    }
  }
  if (any_requires_grad({&x, &w, &b})) {
    auto node = std::make_shared<LinearBackward>();
    node->x2 = x2;
    node->w = wc;
    node->x_shape = x.shape();
    node->need_x = x.requires_grad();
    node->need_w = w.requires_grad();
    node->need_b = b.defined() && b.requires_grad();
    if (relu) node->relu_out = y.detach();
    if (b.defined()) {
      attach_node(y, node, {&x, &w, &b});
    } else {
      attach_node(y, node, {&x, &w});
    }
  }
  return y;
}

}  // namespace

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  return linear_impl("linear", x, w, b, /*relu=*/false);
}

Tensor linear_relu(const Tensor& x, const Tensor& w, const Tensor& b) {
  return linear_impl("linear_relu", x, w, b, /*relu=*/true);
}

namespace {

struct LoraLinearBackward : Node {
  Tensor x2, xl2, w, a, bu,
      u;  // [N, in], [N, in] (x2 when shared), [out, in], [r, in], [out, r], [N, r]
  Shape x_shape;
  double scale = 1;
  bool shared = false;  // x_lora is x: one input, one gradient
  bool need_x = false, need_w = false, need_b = false, need_xl = false, need_a = false,
       need_bu = false;
  const char* name() const override { return "LoraLinearBackward"; }
  std::vector<Tensor> apply(const Tensor& g_in) override {
    check_not_released(*this);
    const int64_t N = x2.shape()[0], out_f = w.shape()[0];
    const Tensor g = g_in.reshape({N, out_f}).contiguous();
    Tensor gx, gw, gb, gxl, ga, gbu;
    Tensor gu;  // scale · g b_up: [N, r], small
    if (need_a || need_xl || (shared && need_x)) gu = scale * gemm2d(g, bu);
    if (need_x) {
      gx = gemm2d(g, w);
      if (shared) gemm_accumulate(gx, gu, a, 1.0);  // + (scale · g b_up) a, same buffer
      gx = gx.reshape(x_shape);
    }
    if (need_xl && !shared) gxl = gemm2d(gu, a).reshape(x_shape);
    if (need_w) gw = gemm2d(g.transpose(0, 1), x2);
    if (need_b) gb = sum(g, 0, false);
    if (need_a) ga = gemm2d(gu.transpose(0, 1), xl2);
    if (need_bu) gbu = scale * gemm2d(g.transpose(0, 1), u);
    std::vector<Tensor> out = {gx, gw};
    if (has_bias) out.push_back(gb);
    if (!shared) out.push_back(gxl);
    out.push_back(ga);
    out.push_back(gbu);
    return out;
  }
  bool has_bias = false;
  void release_saved() override { x2 = xl2 = w = a = bu = u = Tensor(); }
};

}  // namespace

Tensor lora_linear(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& x_lora,
                   const Tensor& lora_a, const Tensor& lora_b, double scale) {
  check_defined("lora_linear", x, "input");
  check_defined("lora_linear", w, "weight");
  check_defined("lora_linear", x_lora, "lora input");
  check_defined("lora_linear", lora_a, "lora_A");
  check_defined("lora_linear", lora_b, "lora_B");
  check_float_inputs("lora_linear", {&x, &w, &b, &x_lora, &lora_a, &lora_b});
  LETHE_CHECK(std::isfinite(scale), "lora_linear: scale ", scale, " is not finite");
  LETHE_CHECK(w.dim() == 2, "lora_linear: weight must be [out, in], got ", w.str());
  const int64_t in_f = w.shape()[1], out_f = w.shape()[0];
  LETHE_CHECK(x.dim() >= 1 && x.size(-1) == in_f, "lora_linear: input ", x.str(),
              " does not end in in_features = ", in_f, " of weight ", w.str());
  LETHE_CHECK(x_lora.shape() == x.shape(), "lora_linear: lora input ", x_lora.str(),
              " differs in shape from the input ", x.str());
  LETHE_CHECK(lora_a.dim() == 2 && lora_a.shape()[1] == in_f, "lora_linear: lora_A ", lora_a.str(),
              " must be [r, ", in_f, "]");
  const int64_t r = lora_a.shape()[0];
  LETHE_CHECK(lora_b.dim() == 2 && lora_b.shape()[0] == out_f && lora_b.shape()[1] == r,
              "lora_linear: lora_B ", lora_b.str(), " must be [", out_f, ", ", r, "]");
  const bool shared = x_lora.impl() == x.impl();
  Tensor y = linear(x.detach(), w.detach(), b.defined() ? b.detach() : Tensor());
  const int64_t rows = x.numel() / std::max<int64_t>(in_f, 1);
  Tensor x2, xl2, ac, bc, u;
  {
    NoGradGuard ng;
    x2 = x.detach().reshape({rows, in_f}).contiguous();
    xl2 = shared ? x2 : x_lora.detach().reshape({rows, in_f}).contiguous();
    ac = lora_a.detach().contiguous();
    bc = lora_b.detach().contiguous();
    u = gemm2d(xl2, ac.transpose(0, 1));  // [rows, r]
    Tensor y2 = y.reshape({rows, out_f});
    gemm_accumulate(y2, u, bc.transpose(0, 1), scale);  // y += scale · u b_upᵀ in place
  }
  const bool grad = shared ? any_requires_grad({&x, &w, &b, &lora_a, &lora_b})
                           : any_requires_grad({&x, &w, &b, &x_lora, &lora_a, &lora_b});
  if (grad) {
    auto node = std::make_shared<LoraLinearBackward>();
    node->x2 = x2;
    node->xl2 = xl2;
    node->w = w.detach().contiguous();
    node->a = ac;
    node->bu = bc;
    node->u = u;
    node->x_shape = x.shape();
    node->scale = scale;
    node->shared = shared;
    node->has_bias = b.defined();
    node->need_x = x.requires_grad();
    node->need_w = w.requires_grad();
    node->need_b = b.defined() && b.requires_grad();
    node->need_xl = !shared && x_lora.requires_grad();
    node->need_a = lora_a.requires_grad();
    node->need_bu = lora_b.requires_grad();
    std::vector<Tensor> inputs = {x, w};
    if (b.defined()) inputs.push_back(b);
    if (!shared) inputs.push_back(x_lora);
    inputs.push_back(lora_a);
    inputs.push_back(lora_b);
    attach_node(y, node, inputs);
  }
  return y;
}

}  // namespace lethe
