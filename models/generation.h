// Options and results of text generation, shared by every model family (CausalLM::generate).
// Token ids in and out; no tokenizer and no model code here: generate_with runs the loop around
// a family's cached forward step.
#pragma once

#include <cstdint>
#include <functional>
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
  std::optional<int64_t> eos_token_id;  // default: the config's EOS ids (none: never stops)
  std::optional<int64_t> pad_token_id;  // written after a row's EOS; default: config's, else 0
};

struct GenerateResult {
  // Per row: the new tokens, up to and including EOS when it was produced.
  std::vector<std::vector<int64_t>> tokens;
  // [B, T + steps] like HF's output: prompt, then new tokens, pad after a row finished.
  Tensor sequences;
};

// One cached decoding step of a model: the logits [B, T, V] of `ids` [B, T] given `mask`
// [B, past + T]; the step's own KV cache holds the past.
using DecodeStep = std::function<Tensor(const Tensor& ids, const Tensor& mask)>;

// The decoding loop of every family: prompt_ids, prompt_mask i64 [B, T], LEFT-padded (every row's
// last column must be a token; otherwise lethe::Error). Stops when every row produced one of the
// EOS ids (options.eos_token_id when set, else `model_eos`) or after max_new_tokens; rows that
// finished get the pad id (options.pad_token_id, else `model_pad`). Runs without recording
// gradients.
GenerateResult generate_with(const Tensor& prompt_ids, const Tensor& prompt_mask,
                             const GenerateOptions& options, const std::vector<int64_t>& model_eos,
                             int64_t model_pad, const DecodeStep& step);

// The distribution sampling draws from: softmax(logits / temperature) after HF's top-k (ties at
// the k-th value kept) and top-p (ascending sort, drop the prefix of mass <= 1 - top_p, the top
// token always kept) filters; filtered tokens get 0. Exposed for tests.
std::vector<double> sampling_distribution(const std::vector<float>& logits,
                                          const GenerateOptions& options);

// The next token from one row of logits under `options` (greedy or sampled with the
// temperature/top-k/top-p filters); `u` is a uniform draw in [0, 1). Exposed for tests.
int64_t pick_next_token(const std::vector<float>& logits, const GenerateOptions& options, double u);

}  // namespace lethe::models
