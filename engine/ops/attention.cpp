// attention(q, k, v, key_mask, causal, scale, dropout): checks shapes, dtypes and the mask, runs
// the backend's fused kernel and records one node whose backward is the fused backward kernel.
#include <cmath>

#include "engine/ops/common.h"

namespace lethe {

using namespace ops_detail;

namespace {

std::string brief(const Tensor& t) {
  return std::string(dtype_name(t.dtype())) + shape_str(t.shape());
}

struct AttentionBackward : Node {
  kernels::AttentionArgs fwd;  // sizes, flags and scale (pointers refreshed in apply)
  Tensor q, k, v, out, lse, key_mask;
  bool need_q = false, need_k = false, need_v = false;
  const char* name() const override { return "AttentionBackward"; }
  std::vector<Tensor> apply(const Tensor& g_in) override {
    check_not_released(*this);
    Tensor g = g_in.contiguous();
    Tensor dq = Tensor::empty(q.shape(), q.dtype(), q.device());
    Tensor dk = Tensor::empty(k.shape(), k.dtype(), k.device());
    Tensor dv = Tensor::empty(v.shape(), v.dtype(), v.device());
    if (q.numel() > 0 || k.numel() > 0) {
      kernels::AttentionBackwardArgs a;
      a.fwd = fwd;
      a.fwd.q = q.data_ptr();
      a.fwd.k = k.data_ptr();
      a.fwd.v = v.data_ptr();
      a.fwd.key_mask = key_mask.defined() ? key_mask.data<int64_t>() : nullptr;
      a.fwd.out = out.data_ptr();
      a.fwd.lse = lse.data<float>();
      a.dout = g.data_ptr();
      a.dq = dq.data_ptr();
      a.dk = dk.data_ptr();
      a.dv = dv.data_ptr();
      backend(q.device()).attention_backward(a);
    }
    return {need_q ? dq : Tensor(), need_k ? dk : Tensor(), need_v ? dv : Tensor()};
  }
  void release_saved() override { q = k = v = out = lse = key_mask = Tensor(); }
};

}  // namespace

Tensor attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                 const Tensor& key_mask_in, bool causal, double scale, const DropoutSpec& dropout) {
  check_defined("attention", q_in, "q");
  check_defined("attention", k_in, "k");
  check_defined("attention", v_in, "v");
  check_float_inputs("attention", {&q_in, &k_in, &v_in});
  LETHE_CHECK(q_in.dim() == 4, "attention: q ", brief(q_in), " must be 4-d [B, H, Tq, D]");
  LETHE_CHECK(k_in.dim() == 4, "attention: k ", brief(k_in), " must be 4-d [B, H, Tk, D]");
  LETHE_CHECK(v_in.dim() == 4, "attention: v ", brief(v_in), " must be 4-d [B, H, Tk, D]");
  const Shape& qs = q_in.shape();
  const Shape& ks = k_in.shape();
  const char* dim_names[] = {"batch", "heads", "length", "head_dim"};
  for (int d : {0, 3}) {
    LETHE_CHECK(qs[d] == ks[d], "attention: q ", brief(q_in), " and k ", brief(k_in), " differ in ",
                dim_names[d]);
  }
  LETHE_CHECK(ks[1] > 0 ? qs[1] % ks[1] == 0 : qs[1] == 0, "attention: q ", brief(q_in), " has ",
              qs[1], " heads, not a multiple of k ", brief(k_in), "'s ", ks[1],
              " (grouped-query attention shares each kv head among heads / kv_heads query heads)");
  LETHE_CHECK(v_in.shape() == ks, "attention: v ", brief(v_in), " must have the shape of k ",
              brief(k_in));
  LETHE_CHECK(std::isfinite(scale), "attention: scale must be finite, got ", scale);
  LETHE_CHECK(dropout.p >= 0.0 && dropout.p < 1.0, "attention: dropout p must be in [0, 1), got ",
              dropout.p);
  const int64_t B = qs[0], H = qs[1], KVH = ks[1], Tq = qs[2], Tk = ks[2], D = qs[3];
  Tensor key_mask;
  if (key_mask_in.defined()) {
    LETHE_CHECK(key_mask_in.dtype() == DType::i64, "attention: key_mask ", brief(key_mask_in),
                " must be i64 (1 = attend, 0 = padding)");
    LETHE_CHECK(
        key_mask_in.dim() == 2 && key_mask_in.shape()[0] == B && key_mask_in.shape()[1] == Tk,
        "attention: key_mask ", brief(key_mask_in), " must have shape [B, Tk] = [", B, ", ", Tk,
        "] for k ", brief(k_in));
    LETHE_CHECK(key_mask_in.device() == q_in.device(), "attention: key_mask ", key_mask_in.str(),
                " is on a different device than q ", q_in.str());
    key_mask = key_mask_in.detach().contiguous();
  }
  Tensor q, k, v;
  const bool grad = any_requires_grad({&q_in, &k_in, &v_in});
  // k and v read in place when they are slices of a preallocated cache [B, H, capacity, D] (rows
  // D apart, (b, h) matrices S apart) and no gradient is needed: no copy of the cache per token.
  auto cache_slice = [&](const Tensor& t) {
    const Shape& st = t.strides();
    return st[3] == 1 && st[2] == D && st[1] >= Tk * D && st[0] == KVH * st[1];
  };
  int64_t kv_stride = 0;
  {
    NoGradGuard ng;
    q = q_in.detach().contiguous();
    if (!grad && Tk > 0 && D > 0 && cache_slice(k_in) && cache_slice(v_in) &&
        k_in.strides() == v_in.strides()) {
      k = k_in.detach();
      v = v_in.detach();
      kv_stride = k_in.strides()[1];
    } else {
      k = k_in.detach().contiguous();
      v = v_in.detach().contiguous();
    }
  }
  Tensor out = Tensor::empty(qs, q.dtype(), q.device());
  Tensor lse = Tensor::empty({B, H, Tq}, DType::f32, q.device());
  kernels::AttentionArgs a;
  a.dtype = q.dtype();
  a.batch = B;
  a.heads = H;
  a.kv_heads = KVH;
  a.q_len = Tq;
  a.kv_len = Tk;
  a.head_dim = D;
  a.causal = causal;
  a.scale = scale;
  a.kv_stride = kv_stride;
  a.dropout = dropout.p;
  a.dropout_seed = dropout.seed;
  a.dropout_offset = dropout.offset;
  a.compute = q.dtype() == DType::f32 && matmul_precision() == MatmulPrecision::bf16
                  ? kernels::GemmCompute::bf16
                  : kernels::GemmCompute::native;
  if (B * H * Tq > 0) {
    a.q = q.data_ptr();
    a.k = k.data_ptr();
    a.v = v.data_ptr();
    a.key_mask = key_mask.defined() ? key_mask.data<int64_t>() : nullptr;
    a.out = out.data_ptr();
    a.lse = lse.data<float>();
    backend(q.device()).attention_forward(a);
  }
  if (grad) {
    auto node = std::make_shared<AttentionBackward>();
    node->fwd = a;
    node->q = q;
    node->k = k;
    node->v = v;
    node->out = out.detach();
    node->lse = lse;
    node->key_mask = key_mask;
    node->need_q = q_in.requires_grad();
    node->need_k = k_in.requires_grad();
    node->need_v = v_in.requires_grad();
    attach_node(out, node, {&q_in, &k_in, &v_in});
  }
  return out;
}

}  // namespace lethe
