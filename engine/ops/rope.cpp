// rotary_embedding(x, positions, inv_freq, attention_scaling): Llama's RoPE on q or k, one backend
// call per direction (the backward is the inverse rotation of the gradient); positions and
// inv_freq are constants (no gradient).
#include <cmath>

#include "engine/ops/common.h"

namespace lethe {

using namespace ops_detail;

namespace {

kernels::RopeArgs rope_args(const Tensor& x, const Tensor& positions, const Tensor& inv_freq,
                            double attention_scaling) {
  kernels::RopeArgs a;
  a.dtype = x.dtype();
  a.batch = x.shape()[0];
  a.heads = x.shape()[1];
  a.seq = x.shape()[2];
  a.head_dim = x.shape()[3];
  a.positions = positions.data<int64_t>();
  a.inv_freq = inv_freq.data<float>();
  a.attention_scaling = attention_scaling;
  return a;
}

// y = R(θ) x, or Rᵀ x (inverse), over a contiguous x on x's device.
Tensor rotate(const Tensor& x_in, const Tensor& positions, const Tensor& inv_freq, double scaling,
              bool inverse) {
  Tensor x = x_in.contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.numel()) {
    kernels::RopeArgs a = rope_args(x, positions, inv_freq, scaling);
    a.x = x.data_ptr();
    a.y = y.data_ptr();
    a.inverse = inverse;
    backend(x.device()).rope(a);
  }
  return y;
}

struct RopeBackward : Node {
  Tensor positions, inv_freq;  // on the device, contiguous
  double scaling = 1.0;
  const char* name() const override { return "RotaryEmbeddingBackward"; }
  std::vector<Tensor> apply(const Tensor& g) override {
    check_not_released(*this);
    return {rotate(g, positions, inv_freq, scaling, /*inverse=*/true)};
  }
  void release_saved() override { positions = inv_freq = Tensor(); }
};

}  // namespace

Tensor rotary_embedding(const Tensor& x, const Tensor& positions, const Tensor& inv_freq,
                        double attention_scaling) {
  const char* op = "rotary_embedding";
  check_defined(op, x, "input");
  check_defined(op, positions, "positions");
  check_defined(op, inv_freq, "inv_freq");
  check_float_inputs(op, {&x});
  LETHE_CHECK(x.dim() == 4, op, ": input ", x.str(), " must be 4-d [B, H, T, D]");
  const int64_t B = x.shape()[0], T = x.shape()[2], D = x.shape()[3];
  LETHE_CHECK(D % 2 == 0, op, ": head dim ", D, " of input ", x.str(), " must be even");
  LETHE_CHECK(positions.dtype() == DType::i64 && positions.dim() == 2 &&
                  positions.shape()[0] == B && positions.shape()[1] == T,
              op, ": positions ", positions.str(), " must be i64 [B, T] = [", B, ", ", T, "]");
  LETHE_CHECK(inv_freq.dtype() == DType::f32 && inv_freq.dim() == 1 && inv_freq.shape()[0] == D / 2,
              op, ": inv_freq ", inv_freq.str(), " must be f32 [D / 2] = [", D / 2, "]");
  LETHE_CHECK(positions.device() == x.device() || positions.device() == Device::cpu(), op,
              ": positions ", positions.str(), " are on neither the input's device nor the host");
  LETHE_CHECK(std::isfinite(attention_scaling), op, ": attention_scaling ", attention_scaling,
              " is not finite");
  Tensor pos, freq;
  {
    NoGradGuard ng;
    pos = positions.detach().contiguous().to(x.device());
    freq = inv_freq.detach().contiguous().to(x.device());
  }
  Tensor y;
  {
    NoGradGuard ng;
    y = rotate(x.detach(), pos, freq, attention_scaling, /*inverse=*/false);
  }
  if (any_requires_grad({&x})) {
    auto node = std::make_shared<RopeBackward>();
    node->positions = pos;
    node->inv_freq = freq;
    node->scaling = attention_scaling;
    attach_node(y, node, {&x});
  }
  return y;
}

}  // namespace lethe
