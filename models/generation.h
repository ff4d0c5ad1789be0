// Options and results of text generation, shared by every model family (CausalLM::generate).
// Token ids in and out; no tokenizer and no model code here.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "engine/tensor.h"

namespace lethe::models {

struct GenerateOptions {
  int64_t max_new_tokens = 20;
  bool do_sample = false;               // false: greedy (argmax, lowest id on ties)
  double temperature = 1.0;             // > 0; applied before top-k / top-p (as HF's processors)
  int64_t top_k = 0;                    // 0: off
  double top_p = 1.0;                   // 1: off
  uint64_t seed = 0;                    // sampling draws depend only on (seed, row, step)
  std::optional<int64_t> eos_token_id;  // default: config.eos_token_id (none: never stops)
  std::optional<int64_t> pad_token_id;  // written after a row's EOS; default: config's, else 0
};

struct GenerateResult {
  // Per row: the new tokens, up to and including EOS when it was produced.
  std::vector<std::vector<int64_t>> tokens;
  // [B, T + steps] like HF's output: prompt, then new tokens, pad after a row finished.
  Tensor sequences;
};

}  // namespace lethe::models
