// KvCache: the keys and values of every layer for incremental decoding, shared by the model
// families (each fills it in its own forward). No model code here.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace lethe::models {

// Preallocated per layer: k[i], v[i] are [B, KVH, capacity, D] buffers whose first length()
// positions are filled (KVH: the model's key/value heads). A forward writes its new keys and
// values into the next positions and attention reads the filled part in place (no copy of the
// cache per token). Set `reserve` before the first forward to the total length expected
// (generation: prompt + max new tokens); past it the buffers grow by doubling (one copy).
// The attention mask passed to a forward covers past + new tokens.
struct KvCache {
  std::vector<Tensor> k, v;
  int64_t filled = 0;
  int64_t reserve = 0;
  int64_t length() const { return filled; }
  int64_t capacity() const { return k.empty() ? 0 : k[0].size(2); }
  void clear() {
    k.clear();
    v.clear();
    filled = 0;
  }

  // Before a forward of T new tokens: buffers of `layers` layers, each [batch, kv_heads, cap, D],
  // that hold length() + T positions. First use: `reserve` positions (at least these); outgrown:
  // double, keeping the past.
  void prepare(int64_t layers, int64_t batch, int64_t kv_heads, int64_t head_dim,
               int64_t new_tokens, Device device);
  // Writes layer i's new keys and values [B, KVH, T, D] at positions [length(), length() + T) and
  // returns the keys and values attention reads, [B, KVH, length() + T, D]: views of the buffers,
  // or — when gradients must reach k and v — the constant past joined to them.
  std::pair<Tensor, Tensor> append(int64_t layer, const Tensor& k_new, const Tensor& v_new);
  // After the forward: the new tokens count as cached.
  void commit(int64_t new_tokens) { filled += new_tokens; }
};

}  // namespace lethe::models
