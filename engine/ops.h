// Differentiable ops: each is one autograd node with a hand-written backward, dispatched to the
// backend of its inputs' device. Ops never see CUDA; they check shapes/dtypes and call kernels.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace lethe {

// Float ops compute in f32 or f64 (f64 is for gradient checks); inputs of one op share a dtype
// and device, or the op throws lethe::Error naming both.

// ---- elementwise (numpy broadcasting)
// ------------------------------------------------------------
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor scale(const Tensor& x, double s);       // s * x
Tensor add_scalar(const Tensor& x, double s);  // x + s
Tensor neg(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor gelu(const Tensor& x);  // exact (erf) form, as torch.nn.functional.gelu
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor square(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor log_sigmoid(const Tensor& x);  // stable log(sigmoid(x))
Tensor silu(const Tensor& x);         // x · sigmoid(x), as torch.nn.functional.silu
inline Tensor operator+(const Tensor& a, const Tensor& b) {
  return add(a, b);
}
inline Tensor operator-(const Tensor& a, const Tensor& b) {
  return sub(a, b);
}
inline Tensor operator*(const Tensor& a, const Tensor& b) {
  return mul(a, b);
}
inline Tensor operator/(const Tensor& a, const Tensor& b) {
  return div(a, b);
}
inline Tensor operator*(double s, const Tensor& x) {
  return scale(x, s);
}
inline Tensor operator-(const Tensor& x) {
  return neg(x);
}

// Inverted dropout: zeroes with probability p, scales kept values by 1/(1-p). Identity when
// !training or p == 0. The mask depends only on (seed, offset) — reproducible on every device.
Tensor dropout(const Tensor& x, double p, bool training, uint64_t seed, uint64_t offset = 0);
// A dropout that a fused op applies to one of its inputs: what dropout(x, p, true, seed, offset)
// would do to it (p = 0: none).
struct DropoutSpec {
  double p = 0.0;
  uint64_t seed = 0, offset = 0;
};

// ---- in-place arithmetic (not recorded by autograd) ---------------------------------------------
// Like Tensor::copy_ and fill_: they refuse a target that requires grad while grad mode is on
// (wrap the update in NoGradGuard), and return it. f32 or f64; the target must be contiguous.
// y += a · x, with x of y's shape, dtype and device (any layout).
Tensor& axpy_(Tensor& y, double a, const Tensor& x);
// x *= a.
Tensor& scale_(Tensor& x, double a);

// ---- reductions ------------------------------------------------------------------------------
Tensor sum(const Tensor& x);                                 // all elements → scalar
Tensor sum(const Tensor& x, int dim, bool keepdim = false);  // one dim
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, int dim, bool keepdim = false);
// Sums a broadcast result back to `shape` (the backward of broadcasting); differentiable.
Tensor sum_to_shape(const Tensor& x, const Shape& shape);

// ---- shape -----------------------------------------------------------------------------------
Tensor concat(const std::vector<Tensor>& tensors, int dim);

// ---- dense -----------------------------------------------------------------------------------
// Batched matmul: a [..., m, k] @ b [..., k, n] (leading dims broadcast); 1-D not supported.
Tensor matmul(const Tensor& a, const Tensor& b);
// y = x w^T + b with x [..., in], w [out, in], b [out] (optional), as torch.nn.functional.linear.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = Tensor());
// relu(linear(x, w, b)) in one GEMM: the ReLU is the GEMM's epilogue (a oneDNN post-op on the
// CPU), no separate pass over the output, and backward masks with the saved output itself (which
// the next layer's linear holds anyway): one activation of the layer's width less.
Tensor linear_relu(const Tensor& x, const Tensor& w, const Tensor& b = Tensor());
// LoRA (PEFT): y = x wᵀ + b + scale · (x_lora aᵀ) b_upᵀ with lora_a [r, in], lora_b [out, r];
// x_lora is x itself or dropout(x). The low-rank term is accumulated into the base GEMM's output
// (a second GEMM with β = 1), never through a second [rows, out] buffer; in backward, when x_lora
// is x, both input gradients accumulate into one buffer too.
Tensor lora_linear(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& x_lora,
                   const Tensor& lora_a, const Tensor& lora_b, double scale);

// GEMM precision for f32 tensors: native f32, or bf16 operands with f32 accumulation
// (thread-local; like torch's autocast for matmuls only).
enum class MatmulPrecision { f32, bf16 };
MatmulPrecision matmul_precision();
void set_matmul_precision(MatmulPrecision p);
// How the CPU runs f32 and bf16 GEMMs, in one line for benchmark output: the GEMM path, the
// CPU's instruction set as oneDNN reads it, and whether bf16 GEMMs are native or f32 GEMMs on
// bf16-rounded operands.
std::string cpu_gemm_description();

// ---- normalisation, softmax --------------------------------------------------------------------
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);
// RMS norm over the last dim, as transformers' LlamaRMSNorm: weight · (x / √(mean(x²) + eps)),
// statistics in the input's dtype (float32 for f32). weight [last dim] or undefined.
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps = 1e-6);

// The residual add fused with the layer norm that follows it (a pre-LN decoder's `h = r + a;
// layer_norm(h)`), with the dropout on the sublayer's output: sum = dropout(x) + residual and
// normed = layer_norm(sum, weight, bias, eps), computed in one pass per row — the same numbers as
// dropout, add then layer_norm on every backend, bit for bit — with the same gradients (the sum's
// gradient is what flows back from both of its uses; x's is masked by the regenerated dropout
// mask). x and residual have the same shape.
struct ResidualNorm {
  Tensor sum;
  Tensor normed;
};
ResidualNorm add_layer_norm(const Tensor& x, const Tensor& residual, const Tensor& weight,
                            const Tensor& bias, double eps = 1e-5, const DropoutSpec& drop = {});
Tensor softmax(const Tensor& x);      // over the last dim
Tensor log_softmax(const Tensor& x);  // over the last dim

// ---- attention --------------------------------------------------------------------------------
// q [B,H,Tq,D], k/v [B,KVH,Tk,D] → [B,H,Tq,D], H a multiple of KVH: grouped-query attention (query
// head h reads kv head h / (H / KVH); no copies of k and v). Causal with queries aligned to the end
// of the keys (for a KV cache). key_mask (i64 [B,Tk], 1 = attend, 0 = padding) is optional. A query
// row that sees no key at all outputs zeros. Scores are scaled by `scale`. Softmax in f32 or f64.
// Dropout on the probabilities (training): the mask dropout(P, p, true, seed, offset) would draw
// over the contiguous [B, H, Tq, Tk] probabilities, applied inside the kernels (forward and
// backward regenerate it; no mask or probabilities are stored).
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_mask,
                 bool causal = true, double scale = 1.0, const DropoutSpec& dropout = {});

// ---- rotary position embedding ------------------------------------------------------------------
// Llama's RoPE (transformers' rotate_half layout) on q or k [B, H, T, D], D even: each pair
// (i, i + D/2) rotated by θ = positions[b, t] · inv_freq[i], the angle in the input's dtype (f32
// for f32, as transformers computes its cos/sin tables in float32), cos and sin scaled by
// attention_scaling (llama3/yarn's factor; 1 otherwise). positions i64 [B, T] (host or the
// input's device), inv_freq f32 [D/2]; neither gets a gradient. Backward: the inverse rotation.
Tensor rotary_embedding(const Tensor& x, const Tensor& positions, const Tensor& inv_freq,
                        double attention_scaling = 1.0);

// ---- embedding --------------------------------------------------------------------------------
// table [V, E], ids (i64, any shape) → [..., E]; rows equal to padding_idx get no gradient.
// ids may live on the host while the table lives on a device: they are checked on the host and
// copied over, with no device→host sync.
Tensor embedding(const Tensor& table, const Tensor& ids, std::optional<int64_t> padding_idx = {});

// ---- losses -----------------------------------------------------------------------------------
enum class Reduction {
  none,          // per-token losses, shape of targets
  token_mean,    // sum over valid tokens / number of valid tokens (HF)
  sample_mean,   // each row's mean over its valid tokens, then the mean over rows that have any
  sequence_sum,  // per-row sums, shape [rows] (targets must be 2-D)
};
enum class LossMode { nll, unlikelihood };

struct CrossEntropyOptions {
  int64_t ignore_index = -100;
  Reduction reduction = Reduction::token_mean;
  LossMode mode = LossMode::nll;
  double unlikelihood_c = 0.5;  // −log(1 − c·p); c ∈ (0, 1]
  // Optional per-token weights (f32, shape of targets); may be negative (gradient ascent).
  Tensor weights;
};

// Fused softmax + cross-entropy: logits [..., V], targets i64 [...] (no shift is applied here).
// Valid tokens are those != ignore_index; weights multiply each token's loss.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets,
                     const CrossEntropyOptions& options = {});

// log p(target) per position: logits [..., V], targets [...] → [...]; ignore_index positions 0.
Tensor token_logprobs(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100);

// ---- the fused LM head --------------------------------------------------------------------------
struct LinearCrossEntropyOptions {
  int64_t ignore_index = -100;
  LossMode mode = LossMode::nll;
  double unlikelihood_c = 0.5;  // −log(1 − c·p); c ∈ (0, 1]
  // Optional per-token weights (f32, shape of targets), signed: a forget token with a negative
  // weight ascends while a retain token with a positive one descends, in one call.
  Tensor weights;
  // false: the scalar Σ_t w_t ℓ_t; true: w_t ℓ_t per token, shaped like targets.
  bool per_token = false;
  // Token rows per chunk; 0: as many as fit chunk_bytes of logits (at least 1).
  int64_t chunk_rows = 0;
  int64_t chunk_bytes = int64_t{64} << 20;
};

// cross_entropy(linear(x, w), targets) without the [tokens × vocab] logits: x [..., E] (the
// final hidden states), w [V, E] (the LM head, no bias), targets i64 [...]. Token rows go in
// chunks: a chunk's logits → loss (and dlogits in place) → the dx and dw GEMMs; only one chunk's
// logits exist at a time. The scalar form computes its gradients during the forward pass (when
// any input requires grad) and scales them by the upstream gradient in backward, so the head's
// GEMMs run once each, as unfused; the per-token form recomputes each chunk's logits in backward
// (one more head GEMM) because its upstream gradient differs per token. Targets must lie in
// [0, V) or equal ignore_index (checked on the host when they live there). Targets and weights may
// live on the host while x lives on a device: checked there, then copied over (no sync).
Tensor linear_cross_entropy(const Tensor& x, const Tensor& w, const Tensor& targets,
                            const LinearCrossEntropyOptions& options = {});

// log p(target) per token through the head (token_logprobs(linear(x, w), targets) fused):
// [...] shaped like targets, 0 at ignore_index.
Tensor linear_token_logprobs(const Tensor& x, const Tensor& w, const Tensor& targets,
                             int64_t ignore_index = -100);

// KL(softmax(ref) ‖ softmax(logits)) per row over the last dim → [...]. ref may require grad.
Tensor kl_div(const Tensor& ref_logits, const Tensor& logits);

}  // namespace lethe
