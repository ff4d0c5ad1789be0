// OPT's generation: the shared loop (models/generation.h) around OptModel's cached forward.
#include "models/opt/generate.h"

#include <algorithm>

namespace lethe::models {

GenerateResult generate(const OptModel& model, const Tensor& prompt_ids, const Tensor& prompt_mask,
                        const GenerateOptions& options) {
  const OptConfig& c = model.config();
  KvCache cache;
  if (prompt_ids.defined() && prompt_ids.dim() == 2)  // no regrowth while generating
    cache.reserve = prompt_ids.size(1) + std::max<int64_t>(options.max_new_tokens, 0);
  OptForwardOptions fo;
  fo.cache = &cache;
  std::vector<int64_t> eos;
  if (c.eos_token_id) eos.push_back(*c.eos_token_id);
  return generate_with(
      prompt_ids, prompt_mask, options, eos, c.pad_token_id.value_or(0),
      [&](const Tensor& ids, const Tensor& mask) { return model.forward(ids, mask, fo); });
}

GenerateResult OptModel::generate(const Tensor& prompt_ids, const Tensor& prompt_mask,
                                  const GenerateOptions& options) const {
  return models::generate(*this, prompt_ids, prompt_mask, options);
}

}  // namespace lethe::models
