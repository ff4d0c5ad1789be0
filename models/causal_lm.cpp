// CausalLM's shared parts and the family dispatch of load_causal_lm.
#include "models/causal_lm.h"

#include "engine/error.h"
#include "engine/io/json.h"
#include "engine/ops.h"
#include "models/opt/opt_config.h"
#include "models/opt/opt_model.h"
#include "models/opt/opt_weights.h"

namespace lethe::models {

Tensor CausalLM::logits(const Tensor& ids, const Tensor& attention_mask,
                        const ForwardOptions& options) const {
  return linear(hidden_states(ids, attention_mask, options), lm_head_weight());
}

Tensor CausalLM::apply_linear(const std::string& name, const Tensor& x, const Tensor& w,
                              const Tensor& b) const {
  return linear_fn_ ? linear_fn_(name, x, w, b) : linear(x, w, b);
}

Tensor CausalLM::apply_linear_relu(const std::string& name, const Tensor& x, const Tensor& w,
                                   const Tensor& b) const {
  return linear_fn_ ? relu(linear_fn_(name, x, w, b)) : linear_relu(x, w, b);
}

Tensor shift_labels(const Tensor& labels) {
  LETHE_CHECK(labels.defined() && labels.dtype() == DType::i64 && labels.dim() == 2,
              "shift_labels: labels must be i64 [batch, seq], got ",
              labels.defined() ? labels.str() : std::string("undefined"));
  const int64_t B = labels.size(0), T = labels.size(1);
  const std::vector<int64_t> l = labels.to_int_vector();
  std::vector<int64_t> out(l.size(), -100);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t + 1 < T; ++t) out[b * T + t] = l[b * T + t + 1];
  return Tensor::from_vector(out, {B, T}, DType::i64);
}

std::vector<std::pair<std::string, Shape>> declared_parameters(const std::string& dir) {
  std::vector<std::pair<std::string, Shape>> out;
  for (const OptParamSpec& p : opt_parameter_specs(load_opt_config(dir)))
    out.emplace_back(p.name, p.shape);
  return out;
}

std::unique_ptr<CausalLM> load_causal_lm(const std::string& dir, Device device,
                                         const ModelOptions& options) {
  return std::make_unique<OptModel>(OptModel::load(dir, device, {}, options));
}

}  // namespace lethe::models
