// Text generation for OptModel with a KV cache: greedy and sampling (temperature, top-k, top-p,
// seeded), batched left-padded prompts. Token ids in and out; no tokenizer here.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "models/generation.h"
#include "models/opt/opt_model.h"

namespace lethe::models {

// prompt_ids, prompt_mask: i64 [B, T], LEFT-padded (every row's last column must be a token;
// otherwise lethe::Error). Stops when every row produced EOS or after max_new_tokens. Runs
// without recording gradients.
GenerateResult generate(const OptModel& model, const Tensor& prompt_ids, const Tensor& prompt_mask,
                        const GenerateOptions& options = {});

// The distribution sampling draws from: softmax(logits / temperature) after HF's top-k (ties at
// the k-th value kept) and top-p (ascending sort, drop the prefix of mass <= 1 - top_p, the top
// token always kept) filters; filtered tokens get 0. Exposed for tests.
std::vector<double> sampling_distribution(const std::vector<float>& logits,
                                          const GenerateOptions& options);

// The next token from one row of logits under `options` (greedy or sampled with the
// temperature/top-k/top-p filters); `u` is a uniform draw in [0, 1). Exposed for tests.
int64_t pick_next_token(const std::vector<float>& logits, const GenerateOptions& options, double u);

}  // namespace lethe::models
