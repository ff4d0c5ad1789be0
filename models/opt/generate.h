// Text generation for OptModel with its KV cache (the shared loop of models/generation.h).
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

}  // namespace lethe::models
