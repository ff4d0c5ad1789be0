// Op-table rows for layer_norm, add_layer_norm, rms_norm, rotary_embedding, softmax, log_softmax
// and attention (causal, padded, KV-cache shaped, fully masked rows, several query blocks, dropout
// on the probabilities).
#include "op_harness.h"

namespace lethe::testing {
namespace {

using V = std::vector<Tensor>;
using H = std::vector<std::vector<double>>;

// key_mask values [b, t] (1 = attend). Rows keep host vectors, not tensors: a tensor built during
// static initialisation would outlive the backend that frees it.
struct MaskValues {
  std::vector<int64_t> values;
  int64_t b = 0, t = 0;
  Tensor on(Device d) const {
    if (values.empty()) return Tensor();
    return Tensor::from_vector(values, {b, t}, DType::i64).to(d);
  }
};

MaskValues mask(std::vector<int64_t> values, int64_t b, int64_t t) {
  return {std::move(values), b, t};
}

// A one-row key_mask [1, t] whose first `pad` keys are padding.
MaskValues left_padded(int64_t t, int64_t pad) {
  std::vector<int64_t> m(static_cast<size_t>(t), 1);
  for (int64_t i = 0; i < pad; ++i) m[static_cast<size_t>(i)] = 0;
  return mask(m, 1, t);
}

// Puts the first input far from zero mean (layer_norm must subtract it accurately).
void shift_first(H& h) {
  for (double& x : h[0]) x = 50.0 + 3.0 * x;
}

// An OpCase for attention(q, k, v) with q [B,H,Tq,D], k/v [B,H,Tk,D].
OpCase attn(std::string name, int64_t b, int64_t h, int64_t tq, int64_t tk, int64_t d, bool causal,
            double scale, MaskValues key_mask = {}, DropoutSpec drop = {}) {
  return {std::move(name), {{b, h, tq, d}, {b, h, tk, d}, {b, h, tk, d}}, [=](const V& x) {
            return attention(x[0], x[1], x[2], key_mask.on(x[0].device()), causal, scale, drop);
          }};
}

// Grouped-query attention: q [b, h, tq, d], k/v [b, kvh, tk, d].
OpCase gqa(std::string name, int64_t b, int64_t h, int64_t kvh, int64_t tq, int64_t tk, int64_t d,
           MaskValues key_mask = {}, DropoutSpec drop = {}) {
  return {std::move(name), {{b, h, tq, d}, {b, kvh, tk, d}, {b, kvh, tk, d}}, [=](const V& x) {
            return attention(x[0], x[1], x[2], key_mask.on(x[0].device()), true, 0.6, drop);
          }};
}

DropoutSpec drop(double p, uint64_t seed, uint64_t offset = 0) {
  return {p, seed, offset};
}

OpCase with_grads(OpCase c, std::vector<bool> check) {
  c.check_grad = std::move(check);
  return c;
}

const bool registered = register_cases({
    // layer_norm
    {"layer_norm [3,7]",
     {{3, 7}, {7}, {7}},
     [](const V& x) { return layer_norm(x[0], x[1], x[2]); }},
    {"layer_norm [2,3,33] eps=1e-3",
     {{2, 3, 33}, {33}, {33}},
     [](const V& x) { return layer_norm(x[0], x[1], x[2], 1e-3); }},
    {"layer_norm [4,6] eps=0.5",
     {{4, 6}, {6}, {6}},
     [](const V& x) { return layer_norm(x[0], x[1], x[2], 0.5); }},
    {"layer_norm [5,1] single column",
     {{5, 1}, {1}, {1}},
     [](const V& x) { return layer_norm(x[0], x[1], x[2]); }},
    {"layer_norm [3,9] shifted mean",
     {{3, 9}, {9}, {9}},
     [](const V& x) { return layer_norm(x[0], x[1], x[2]); },
     shift_first},
    {"layer_norm [4,5] no bias",
     {{4, 5}, {5}},
     [](const V& x) { return layer_norm(x[0], x[1], Tensor()); }},
    {"layer_norm [4,5] no affine",
     {{4, 5}},
     [](const V& x) { return layer_norm(x[0], Tensor(), Tensor(), 1e-4); }},
    {"layer_norm transposed input [6,4]^T",
     {{6, 4}, {6}, {6}},
     [](const V& x) { return layer_norm(x[0].transpose(0, 1), x[1], x[2]); }},
    {"layer_norm [3,8] weight only grad",
     {{3, 8}, {8}, {8}},
     [](const V& x) { return layer_norm(x[0], x[1], x[2]); },
     nullptr,
     {false, true, false}},
    // add_layer_norm: both outputs in one scalar-able value, so the gradient checks cover the
    // sum's two uses (the norm and the residual stream) flowing back into x and residual.
    {"add_layer_norm [3,7] sum and norm",
     {{3, 7}, {3, 7}, {7}, {7}},
     [](const V& x) {
       const ResidualNorm rn = add_layer_norm(x[0], x[1], x[2], x[3]);
       return add(rn.normed, scale(rn.sum, 0.5));
     }},
    {"add_layer_norm [2,3,33] shifted residual no bias eps=1e-3",
     {{2, 3, 33}, {2, 3, 33}, {33}},
     [](const V& x) {
       const ResidualNorm rn = add_layer_norm(x[0], x[1], x[2], Tensor(), 1e-3);
       return mul(rn.normed, rn.sum);
     },
     shift_first},
    {"add_layer_norm [4,5] norm only",
     {{4, 5}, {4, 5}, {5}, {5}},
     [](const V& x) { return add_layer_norm(x[0], x[1], x[2], x[3]).normed; }},
    // With the sublayer's dropout fused in (sum = dropout(x) + residual): a fixed mask.
    {"add_layer_norm [3,2,9] dropout=0.4 sum and norm",
     {{3, 2, 9}, {3, 2, 9}, {9}, {9}},
     [](const V& x) {
       const ResidualNorm rn = add_layer_norm(x[0], x[1], x[2], x[3], 1e-5, {0.4, 17, 50});
       return add(rn.normed, scale(rn.sum, 0.5));
     }},
    // rms_norm (Llama)
    {"rms_norm [3,7]", {{3, 7}, {7}}, [](const V& x) { return rms_norm(x[0], x[1]); }},
    {"rms_norm [2,3,33] eps=1e-3 shifted",
     {{2, 3, 33}, {33}},
     [](const V& x) { return rms_norm(x[0], x[1], 1e-3); },
     shift_first},
    {"rms_norm [4,5] no weight", {{4, 5}}, [](const V& x) { return rms_norm(x[0], Tensor()); }},
    // rotary_embedding: fixed positions (two rows, one past the other) and frequencies.
    {"rotary_embedding [2,3,4,6] scaling=0.9",
     {{2, 3, 4, 6}},
     [](const V& x) {
       const Tensor pos =
           Tensor::from_vector(std::vector<int64_t>{0, 1, 2, 3, 5, 6, 7, 40}, {2, 4}, DType::i64);
       const Tensor freq = Tensor::from_vector(std::vector<double>{1.0, 0.3, 0.01}, {3});
       return rotary_embedding(x[0], pos, freq, 0.9);
     }},
    {"rotary_embedding [1,2,3,2] transposed input",
     {{1, 3, 2, 2}},
     [](const V& x) {
       const Tensor pos = Tensor::from_vector(std::vector<int64_t>{4, 9, 100}, {1, 3}, DType::i64);
       const Tensor freq = Tensor::from_vector(std::vector<double>{0.7}, {1});
       return rotary_embedding(x[0].transpose(1, 2), pos, freq);
     }},
    // softmax / log_softmax
    {"softmax [4,9]", {{4, 9}}, [](const V& x) { return softmax(x[0]); }},
    {"softmax [2,3,17]", {{2, 3, 17}}, [](const V& x) { return softmax(x[0]); }},
    {"softmax [3,11] x20", {{3, 11}}, [](const V& x) { return softmax(scale(x[0], 20.0)); }},
    {"softmax [5,1]", {{5, 1}}, [](const V& x) { return softmax(x[0]); }},
    {"softmax transposed [5,4]^T",
     {{5, 4}},
     [](const V& x) { return softmax(x[0].transpose(0, 1)); }},
    {"log_softmax [4,9]", {{4, 9}}, [](const V& x) { return log_softmax(x[0]); }},
    {"log_softmax [2,3,17]", {{2, 3, 17}}, [](const V& x) { return log_softmax(x[0]); }},
    {"log_softmax [3,11] x20",
     {{3, 11}},
     [](const V& x) { return log_softmax(scale(x[0], 20.0)); }},
    {"log_softmax [2,1]", {{2, 1}}, [](const V& x) { return log_softmax(x[0]); }},
    // attention
    attn("attention (2,3,5,4) full", 2, 3, 5, 5, 4, false, 1.0),
    attn("attention (2,3,5,4) causal scale=0.5", 2, 3, 5, 5, 4, true, 0.5),
    attn("attention (1,2,7,3) causal", 1, 2, 7, 7, 3, true, 1.0),
    attn("attention (1,2,7,3) full scale=1/sqrt3", 1, 2, 7, 7, 3, false, 0.5773502691896258),
    attn("attention kv-cache Tq=2 Tk=6 causal", 2, 2, 2, 6, 4, true, 0.7),
    attn("attention kv-cache Tq=1 Tk=5 causal", 1, 3, 1, 5, 4, true, 1.0),
    attn("attention Tq=3 Tk=6 full masked", 2, 2, 3, 6, 4, false, 1.0,
         mask({1, 1, 1, 1, 0, 0, 0, 1, 1, 0, 1, 1}, 2, 6)),
    // Left padding with causal: batch 0's first two queries see no key at all (zero rows).
    attn("attention left-padded causal fully-masked rows", 2, 2, 6, 6, 3, true, 0.9,
         mask({0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, 2, 6)),
    // A batch row whose keys are all padding: every query of it sees nothing.
    attn("attention all-padding batch row", 2, 1, 4, 4, 3, false, 1.0,
         mask({1, 0, 1, 1, 0, 0, 0, 0}, 2, 4)),
    attn("attention kv-cache Tq=2 Tk=6 left-padded causal", 2, 2, 2, 6, 3, true, 1.0,
         mask({0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1}, 2, 6)),
    attn("attention D=5 causal masked", 2, 2, 6, 6, 5, true, 0.44721359549995793,
         mask({1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1}, 2, 6)),
    // Longer than one 32-query block: tiles with different key ranges.
    attn("attention (1,1,40,2) causal two blocks", 1, 1, 40, 40, 2, true, 0.8),
    attn("attention Tq=35 Tk=45 causal left-padded", 1, 1, 35, 45, 2, true, 1.0,
         left_padded(45, 12)),
    // Dropout on the probabilities: the mask is a function of (seed, offset, element), the same
    // in every evaluation, so finite differences see a fixed function; the backend mode holds the
    // CUDA kernels to the CPU's mask.
    attn("attention (2,3,9,4) causal dropout=0.3", 2, 3, 9, 9, 4, true, 0.5, {}, drop(0.3, 7)),
    attn("attention Tq=3 Tk=6 masked dropout=0.5 offset", 2, 2, 3, 6, 4, false, 1.0,
         mask({1, 1, 1, 1, 0, 0, 0, 1, 1, 0, 1, 1}, 2, 6), drop(0.5, 3, 1000)),
    attn("attention (1,1,40,3) causal left-padded dropout=0.2 two blocks", 1, 1, 40, 40, 3, true,
         0.8, left_padded(40, 5), drop(0.2, 11)),
    // Grouped-query (2 query heads per kv head) and multi-query (all heads share one) attention.
    gqa("attention GQA H=4 KVH=2 causal", 2, 4, 2, 5, 5, 3),
    gqa("attention MQA H=3 KVH=1 kv-cache masked dropout=0.3", 2, 3, 1, 3, 6, 4,
        mask({1, 1, 1, 1, 0, 0, 0, 1, 1, 0, 1, 1}, 2, 6), drop(0.3, 5)),
    with_grads(attn("attention grads k,v only", 1, 2, 4, 5, 3, true, 1.0), {false, true, true}),
    with_grads(attn("attention grad q only", 1, 2, 4, 5, 3, false, 1.0), {true, false, false}),
    {"attention strided q/k/v from [B,T,H,D]",
     {{2, 5, 2, 3}, {2, 5, 2, 3}, {2, 5, 2, 3}},
     [](const V& x) {
       return attention(x[0].transpose(1, 2), x[1].transpose(1, 2), x[2].transpose(1, 2), Tensor(),
                        true, 1.0);
     }},
});

}  // namespace
}  // namespace lethe::testing
