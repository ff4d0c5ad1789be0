// KvCache: buffer growth and the per-layer append.
#include "models/kv_cache.h"

#include <algorithm>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops.h"

namespace lethe::models {

void KvCache::prepare(int64_t layers, int64_t batch, int64_t kv_heads, int64_t head_dim,
                      int64_t new_tokens, Device device) {
  const int64_t past = length(), total = past + new_tokens;
  LETHE_CHECK(past == 0 || (static_cast<int64_t>(k.size()) == layers && k[0].size(0) == batch &&
                            k[0].size(1) == kv_heads && k[0].size(3) == head_dim),
              "KV cache holds ", k.size(), " layers of ",
              k.empty() ? std::string("nothing") : k[0].str(), "; this forward needs ", layers,
              " layers of [", batch, ", ", kv_heads, ", *, ", head_dim, "]");
  if (past > 0 && capacity() >= total) return;
  const int64_t cap = past == 0 ? std::max(reserve, total) : std::max(total, 2 * capacity());
  NoGradGuard ng;
  for (std::vector<Tensor>* buf : {&k, &v}) {
    buf->resize(static_cast<size_t>(layers));
    for (Tensor& t : *buf) {
      Tensor fresh = Tensor::empty({batch, kv_heads, cap, head_dim}, DType::f32, device);
      if (past > 0) fresh.slice(2, 0, past).copy_(t.slice(2, 0, past));
      t = fresh;
    }
  }
}

std::pair<Tensor, Tensor> KvCache::append(int64_t layer, const Tensor& k_new, const Tensor& v_new) {
  const size_t li = static_cast<size_t>(layer);
  LETHE_CHECK(li < k.size(), "KV cache: layer ", layer, " was not prepared (", k.size(),
              " layers)");
  const int64_t past = length(), total = past + k_new.size(2);
  {
    NoGradGuard ng;
    k[li].slice(2, past, total).copy_(k_new);
    v[li].slice(2, past, total).copy_(v_new);
  }
  if (grad_mode_enabled() && (k_new.requires_grad() || v_new.requires_grad())) {
    // Gradients must reach the new keys and values: the past (constant) joined to them.
    if (past == 0) return {k_new, v_new};
    return {concat({k[li].slice(2, 0, past), k_new}, 2),
            concat({v[li].slice(2, 0, past), v_new}, 2)};
  }
  return {k[li].slice(2, 0, total), v[li].slice(2, 0, total)};
}

}  // namespace lethe::models
