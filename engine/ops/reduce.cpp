// Reductions (sum, mean, sum_to_shape) and concat.
#include "engine/ops/common.h"

namespace lethe {

using namespace ops_detail;

namespace {

// Sums contiguous x over dim d → shape with that dim removed (or kept as 1).
Tensor sum_dim_raw(const Tensor& x_in, int d, bool keepdim) {
  Tensor x = x_in.contiguous();
  int64_t outer = 1, inner = 1, r = x.shape()[d];
  for (int i = 0; i < d; ++i) outer *= x.shape()[i];
  for (int i = d + 1; i < x.dim(); ++i) inner *= x.shape()[i];
  Shape out_shape = x.shape();
  out_shape[d] = 1;
  Tensor out = Tensor::zeros(out_shape, x.dtype(), x.device());
  if (out.numel() && r > 0)
    backend(x.device()).reduce_sum(x.dtype(), x.data_ptr(), outer, r, inner, out.data_ptr());
  if (!keepdim) {
    out_shape.erase(out_shape.begin() + d);
    out = make_view(out.storage(), 0, out_shape, contiguous_strides(out_shape), out.dtype());
  }
  return out;
}

struct SumBackward : Node {  // broadcast the gradient back over the reduced dims
  Shape in_shape;
  Shape kept_shape;  // gradient reshaped to this (reduced dims as 1) before expanding
  double factor = 1.0;
  const char* name() const override { return "SumBackward"; }
  std::vector<Tensor> apply(const Tensor& g) override {
    Tensor e = g.reshape(kept_shape).expand(in_shape).contiguous();
    if (factor != 1.0) e = scale(e, factor);
    return {e};
  }
};

Tensor attach_sum(Tensor out, const Tensor& x, const Shape& kept, double factor) {
  if (any_requires_grad({&x})) {
    auto node = std::make_shared<SumBackward>();
    node->in_shape = x.shape();
    node->kept_shape = kept;
    node->factor = factor;
    attach_node(out, node, {&x});
  }
  return out;
}

}  // namespace

Tensor sum(const Tensor& x) {
  check_defined("sum", x, "input");
  check_float_inputs("sum", {&x});
  Tensor flat = x.detach().contiguous();
  Tensor out = Tensor::zeros({}, x.dtype(), x.device());
  if (x.numel())
    backend(x.device()).reduce_sum(x.dtype(), flat.data_ptr(), 1, x.numel(), 1, out.data_ptr());
  return attach_sum(out, x, Shape(x.dim(), 1), 1.0);
}

Tensor mean(const Tensor& x) {
  LETHE_CHECK(x.defined() && x.numel() > 0, "mean: empty tensor ", x.str());
  Tensor s = sum(x);
  return scale(s, 1.0 / static_cast<double>(x.numel()));
}

Tensor sum(const Tensor& x, int dim, bool keepdim) {
  check_defined("sum", x, "input");
  check_float_inputs("sum", {&x});
  int d = wrap_dim(dim, x.dim(), "sum");
  Tensor out = sum_dim_raw(x.detach(), d, keepdim);
  Shape kept = x.shape();
  kept[d] = 1;
  return attach_sum(out, x, kept, 1.0);
}

Tensor mean(const Tensor& x, int dim, bool keepdim) {
  check_defined("mean", x, "input");
  int d = wrap_dim(dim, x.dim(), "mean");
  LETHE_CHECK(x.shape()[d] > 0, "mean: dim ", d, " of ", x.str(), " is empty");
  return scale(sum(x, d, keepdim), 1.0 / static_cast<double>(x.shape()[d]));
}

Tensor sum_to_shape(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  int lead = x.dim() - static_cast<int>(shape.size());
  LETHE_CHECK(lead >= 0, "sum_to_shape: cannot reduce ", x.str(), " to ", shape_str(shape));
  Tensor t = x;
  for (int i = 0; i < lead; ++i) t = sum(t, 0, false);
  for (int d = 0; d < t.dim(); ++d) {
    if (shape[d] == 1 && t.shape()[d] != 1) {
      t = sum(t, d, true);
    } else {
      LETHE_CHECK(shape[d] == t.shape()[d], "sum_to_shape: cannot reduce ", x.str(), " to ",
                  shape_str(shape));
    }
  }
  return t;
}

namespace {
struct ConcatBackward : Node {
  int dim = 0;
  std::vector<int64_t> sizes;
  const char* name() const override { return "ConcatBackward"; }
  std::vector<Tensor> apply(const Tensor& g) override {
    std::vector<Tensor> out;
    int64_t start = 0;
    for (int64_t s : sizes) {
      out.push_back(g.slice(dim, start, start + s).contiguous());
      start += s;
    }
    return out;
  }
};
}  // namespace

Tensor concat(const std::vector<Tensor>& ts, int dim) {
  LETHE_CHECK(!ts.empty(), "concat: no tensors");
  for (const Tensor& t : ts) check_defined("concat", t, "input");
  const Tensor& first = ts[0];
  int d = wrap_dim(dim, first.dim(), "concat");
  Shape out_shape = first.shape();
  int64_t total = 0;
  for (size_t i = 0; i < ts.size(); ++i) {
    const Tensor& t = ts[i];
    LETHE_CHECK(t.dtype() == first.dtype() && t.device() == first.device(), "concat: tensor ", i,
                " is ", t.str(), " but tensor 0 is ", first.str());
    LETHE_CHECK(t.dim() == first.dim(), "concat: tensor ", i, " ", t.str(), " has ", t.dim(),
                " dims, tensor 0 has ", first.dim());
    for (int k = 0; k < t.dim(); ++k)
      LETHE_CHECK(k == d || t.shape()[k] == first.shape()[k], "concat: tensor ", i, " ", t.str(),
                  " does not match tensor 0 ", first.str(), " outside dim ", d);
    total += t.shape()[d];
  }
  out_shape[d] = total;
  Tensor out = Tensor::empty(out_shape, first.dtype(), first.device());
  int64_t start = 0;
  std::vector<int64_t> sizes;
  for (const Tensor& t : ts) {
    int64_t s = t.shape()[d];
    sizes.push_back(s);
    if (t.numel()) {
      Tensor dst = out.detach().slice(d, start, start + s);
      backend(out.device())
          .copy_strided(out.dtype(), dst.data_ptr(), layout_of(dst), t.data_ptr(), layout_of(t));
    }
    start += s;
  }
  if (any_requires_grad(ts)) {
    auto node = std::make_shared<ConcatBackward>();
    node->dim = d;
    node->sizes = sizes;
    attach_node(out, node, ts);
  }
  return out;
}

}  // namespace lethe
