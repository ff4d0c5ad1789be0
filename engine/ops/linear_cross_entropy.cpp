// linear_cross_entropy: the LM head and its loss fused, chunk by chunk over token rows, so the
// [tokens × vocab] logits never exist. Built on the backend's GEMM and cross-entropy kernels: per
// chunk, logits by GEMM, then loss and dlogits written over the logits in place (one fused pass
// over the row on CUDA, cross_entropy_fused), then the dx and dW GEMMs.
#include <algorithm>
#include <cmath>

#include "engine/ops/common.h"
#include "engine/ops/gemm_args.h"

namespace lethe {

using namespace ops_detail;

namespace {

// What forward and backward share: detached, contiguous operands on one device.
struct Head {
  Tensor x2;       // [N, E]
  Tensor w;        // [V, E]
  Tensor targets;  // i64 [N]
  Tensor weights;  // f32 [N] or undefined
  int64_t ignore_index = -100;
  kernels::CrossEntropyMode mode = kernels::CrossEntropyMode::nll;
  double c = 1.0;
  int64_t chunk = 1;  // rows per chunk
  int64_t rows() const { return x2.shape()[0]; }
  int64_t embed() const { return x2.shape()[1]; }
  int64_t vocab() const { return w.shape()[0]; }
  size_t esize() const { return dtype_size(x2.dtype()); }
  kernels::Backend& be() const { return backend(x2.device()); }
  // Rows [r0, r0 + r) of a [rows, cols] tensor, as a view.
  static Tensor rows_of(const Tensor& t, int64_t r0, int64_t r) { return t.slice(0, r0, r0 + r); }

  // buf[0:r] = x2[r0 : r0 + r] wᵀ
  void logits(int64_t r0, int64_t r, Tensor& buf) const {
    be().gemm(gemm_args(rows_of(buf, 0, r), {rows_of(x2, r0, r)}, {w, true}));
  }

  kernels::CrossEntropyArgs ce(int64_t r0, int64_t r, const Tensor& buf, Tensor& loss,
                               Tensor& lse) const {
    kernels::CrossEntropyArgs a;
    a.dtype = x2.dtype();
    a.rows = r;
    a.vocab = vocab();
    a.logits = buf.data_ptr();
    a.targets = targets.data<int64_t>() + r0;
    a.weights = weights.defined() ? weights.data<float>() + r0 : nullptr;
    a.ignore_index = ignore_index;
    a.mode = mode;
    a.c = c;
    a.loss = loss.defined()
                 ? static_cast<char*>(loss.data_ptr()) + static_cast<size_t>(r0) * esize()
                 : nullptr;
    a.lse = lse.data<float>() + r0;
    return a;
  }

  // With buf[0:r] holding the chunk's dlogits: dx[r0 : r0 + r] = dlogits w (written), and
  // dw = dlogitsᵀ x2[r0 : r0 + r] + beta_w · dw.
  void grads(int64_t r0, int64_t r, const Tensor& buf, Tensor* dx, Tensor* dw,
             double beta_w) const {
    const Tensor dlogits = rows_of(buf, 0, r);
    if (dx) be().gemm(gemm_args(rows_of(*dx, r0, r), {dlogits}, {w}));
    if (dw) be().gemm(gemm_args(*dw, {dlogits, true}, {rows_of(x2, r0, r)}, 1.0, beta_w));
  }
};

// The scalar form: gradients of Σ w·ℓ computed in the forward pass; backward scales them.
struct LinearCrossEntropyBackward : Node {
  Tensor dx, dw;  // [N, E] / [V, E] or undefined (input needs none)
  Shape x_shape;
  const char* name() const override { return "LinearCrossEntropyBackward"; }
  std::vector<Tensor> apply(const Tensor& g) override {
    check_not_released(*this);
    Tensor gx, gw;
    if (dx.defined()) gx = mul(dx, g).reshape(x_shape);
    if (dw.defined()) {
      // Straight into the weight's bound grad when the upstream scalar is readable without a
      // device sync (on the host); else a scaled copy that AccumulateGrad adds.
      Tensor sink = leaf_grad_sink(*this, 1, dw.shape(), dw.dtype());
      if (sink.defined() && g.device() == Device::cpu()) {
        backend(dw.device())
            .axpby(dw.dtype(), dw.numel(), g.item(), dw.data_ptr(), 1.0, sink.data_ptr());
      } else {
        gw = mul(dw, g);
      }
    }
    return {gx, gw};
  }
  void release_saved() override { dx = dw = Tensor(); }
};

// The per-token form: each chunk's logits again, dlogits from the upstream gradient per token.
struct LinearCrossEntropyTokensBackward : Node {
  Head head;
  Tensor lse;  // f32 [N]
  Shape x_shape;
  bool need_x = false, need_w = false;
  const char* name() const override { return "LinearCrossEntropyTokensBackward"; }
  std::vector<Tensor> apply(const Tensor& g_in) override {
    check_not_released(*this);
    const Head& h = head;
    const int64_t N = h.rows(), V = h.vocab(), E = h.embed();
    const Tensor g = g_in.contiguous().view({N});
    const DType dt = h.x2.dtype();
    const Device dev = h.x2.device();
    Tensor dx, dw;
    Tensor sink = need_w ? leaf_grad_sink(*this, 1, h.w.shape(), dt) : Tensor();
    if (need_x) dx = Tensor::empty({N, E}, dt, dev);
    if (need_w) dw = sink.defined() ? sink : Tensor::zeros({V, E}, dt, dev);
    const int64_t C = std::min(h.chunk, N);
    Tensor buf = Tensor::empty({std::max<int64_t>(C, 1), V}, dt, dev);
    Tensor none;
    for (int64_t r0 = 0; r0 < N; r0 += C) {
      const int64_t r = std::min(C, N - r0);
      h.logits(r0, r, buf);
      kernels::CrossEntropyBackwardArgs b;
      b.fwd = h.ce(r0, r, buf, none, lse);
      b.dloss = static_cast<const char*>(g.data_ptr()) + static_cast<size_t>(r0) * h.esize();
      b.dlogits = buf.data_ptr();
      h.be().cross_entropy_backward(b);
      h.grads(r0, r, buf, need_x ? &dx : nullptr, need_w ? &dw : nullptr, 1.0);
    }
    Tensor gx = need_x ? dx.view(x_shape) : Tensor();
    Tensor gw = need_w && !sink.defined() ? dw : Tensor();
    return {gx, gw};
  }
  void release_saved() override {
    head = Head();
    lse = Tensor();
  }
};

}  // namespace

Tensor linear_cross_entropy(const Tensor& x, const Tensor& w, const Tensor& targets,
                            const LinearCrossEntropyOptions& o) {
  const char* op = "linear_cross_entropy";
  check_defined(op, x, "hidden states");
  check_defined(op, w, "head weight");
  check_defined(op, targets, "targets");
  check_float_inputs(op, {&x, &w});
  LETHE_CHECK(w.dim() == 2, op, ": head weight must be [vocab, embed], got ", w.str());
  const int64_t V = w.shape()[0], E = w.shape()[1];
  LETHE_CHECK(x.dim() >= 1 && x.size(-1) == E, op, ": hidden states ", x.str(),
              " do not end in embed = ", E, " of the head weight ", w.str());
  Shape lead(x.shape().begin(), x.shape().end() - 1);
  LETHE_CHECK(targets.dtype() == DType::i64, op, ": targets must be i64, got ", targets.str());
  LETHE_CHECK(targets.shape() == lead, op, ": targets ", targets.str(), " must have shape ",
              shape_str(lead), " (hidden states ", x.str(), " without the embed dim)");
  LETHE_CHECK(targets.device() == x.device() || targets.device() == Device::cpu(), op,
              ": device mismatch, hidden states ", x.str(), " vs targets ", targets.str());
  const int64_t N = shape_numel(lead);
  LETHE_CHECK(V > 0 || N == 0, op, ": head weight ", w.str(), " has no vocabulary rows");
  if (o.weights.defined()) {
    LETHE_CHECK(o.weights.dtype() == DType::f32, op, ": weights must be f32, got ",
                o.weights.str());
    LETHE_CHECK(o.weights.shape() == lead, op, ": weights ", o.weights.str(),
                " must have the shape of targets ", targets.str());
    LETHE_CHECK(o.weights.device() == x.device() || o.weights.device() == Device::cpu(), op,
                ": device mismatch, hidden states ", x.str(), " vs weights ", o.weights.str());
  }
  if (o.mode == LossMode::unlikelihood)
    LETHE_CHECK(o.unlikelihood_c > 0.0 && o.unlikelihood_c <= 1.0, op,
                ": unlikelihood_c must be in (0, 1], got ", o.unlikelihood_c);
  LETHE_CHECK(o.chunk_rows >= 0 && o.chunk_bytes > 0, op, ": chunk_rows ", o.chunk_rows,
              " and chunk_bytes ", o.chunk_bytes, " must be >= 0 and > 0");
  if (targets.device() == Device::cpu()) {  // on a device: validated where they were made
    const Tensor tc = targets.contiguous();
    const int64_t* t = tc.data<int64_t>();
    for (int64_t i = 0; i < N; ++i)
      LETHE_CHECK(t[i] == o.ignore_index || (t[i] >= 0 && t[i] < V), op, ": target ", t[i],
                  " at position ", index_string(i, lead), " is outside [0, ", V,
                  ") and is not ignore_index ", o.ignore_index);
  }

  Head h;
  {
    NoGradGuard ng;
    h.x2 = x.detach().reshape({N, E}).contiguous();
    h.w = w.detach().contiguous();
    h.targets = targets.contiguous().view({N}).to(x.device());
    if (o.weights.defined()) h.weights = o.weights.detach().contiguous().view({N}).to(x.device());
  }
  h.ignore_index = o.ignore_index;
  h.mode = o.mode == LossMode::nll ? kernels::CrossEntropyMode::nll
                                   : kernels::CrossEntropyMode::unlikelihood;
  h.c = o.unlikelihood_c;
  const int64_t row_bytes = std::max<int64_t>(V, 1) * static_cast<int64_t>(h.esize());
  h.chunk = o.chunk_rows > 0 ? o.chunk_rows : std::max<int64_t>(1, o.chunk_bytes / row_bytes);

  const DType dt = x.dtype();
  const Device dev = x.device();
  const bool grad = any_requires_grad({&x, &w});
  const bool eager = grad && !o.per_token;
  const bool need_x = grad && x.requires_grad(), need_w = grad && w.requires_grad();
  Tensor loss = Tensor::empty({N}, dt, dev);
  Tensor lse = Tensor::empty({N}, DType::f32, dev);
  Tensor dx, dw;
  if (eager && need_x) dx = Tensor::empty({N, E}, dt, dev);
  if (eager && need_w) dw = N ? Tensor::empty({V, E}, dt, dev) : Tensor::zeros({V, E}, dt, dev);
  const int64_t C = std::min(h.chunk, N);
  if (N) {
    Tensor buf = Tensor::empty({C, V}, dt, dev);
    Tensor ones = eager ? Tensor::ones({C}, dt, dev) : Tensor();
    for (int64_t r0 = 0; r0 < N; r0 += C) {
      const int64_t r = std::min(C, N - r0);
      h.logits(r0, r, buf);
      kernels::CrossEntropyArgs a = h.ce(r0, r, buf, loss, lse);
      if (!eager) {
        h.be().cross_entropy_forward(a);
        continue;
      }
      kernels::CrossEntropyBackwardArgs b;
      b.fwd = a;
      b.dloss = ones.data_ptr();
      b.dlogits = buf.data_ptr();  // in place: the chunk's logits become its dlogits
      h.be().cross_entropy_fused(b);
      h.grads(r0, r, buf, need_x ? &dx : nullptr, need_w ? &dw : nullptr, r0 == 0 ? 0.0 : 1.0);
    }
  }

  Tensor out;
  {
    NoGradGuard ng;
    out = o.per_token ? loss.view(lead) : sum(loss);
  }
  if (!grad) return out;
  if (eager) {
    auto node = std::make_shared<LinearCrossEntropyBackward>();
    node->dx = dx;
    node->dw = dw;
    node->x_shape = x.shape();
    attach_node(out, node, {&x, &w});
  } else {
    auto node = std::make_shared<LinearCrossEntropyTokensBackward>();
    node->head = h;
    node->lse = lse;
    node->x_shape = x.shape();
    node->need_x = need_x;
    node->need_w = need_w;
    attach_node(out, node, {&x, &w});
  }
  return out;
}

Tensor linear_token_logprobs(const Tensor& x, const Tensor& w, const Tensor& targets,
                             int64_t ignore_index) {
  // log p = −nll: the per-token nll with weight −1 (ignored positions stay 0).
  LinearCrossEntropyOptions o;
  o.ignore_index = ignore_index;
  o.per_token = true;
  if (targets.defined())
    o.weights = Tensor::full(targets.shape(), -1.0, DType::f32, targets.device());
  return linear_cross_entropy(x, w, targets, o);
}

}  // namespace lethe
