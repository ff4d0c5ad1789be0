// Per-token statistics of labelled text under a model, and the per-text scores built on them:
// the membership-inference attacks (LOSS, ZLib, Min-K %, Min-K %++, reference), exact
// memorisation, extraction strength and perplexity (ALGORITHMS.md; docs/metrics.md). Batched with
// right padding; only the labelled span of each row leaves the device.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "models/causal_lm.h"
#include "trainers/data/dataset.h"

namespace lethe::eval {

// One text's labelled tokens y_1..y_n under the model (logits at position t predict token t+1).
struct TokenStats {
  std::vector<int64_t> tokens;  // y_i
  std::vector<double> logprob;  // log p(y_i | prefix)
  std::vector<uint8_t> match;   // argmax_v p(v | prefix) == y_i (lowest id on ties)
  std::vector<double> mu, var;  // Σ_v p log p and Σ_v p (log p)² − μ² (when asked for)
  size_t size() const { return tokens.size(); }
};

// Every sample's statistics, `batch_size` samples per forward. `vocab_stats`: also μ and σ²
// (Min-K %++). Samples must have at least one labelled token.
std::vector<TokenStats> token_stats(const models::CausalLM& model,
                                    const std::vector<trainers::data::Sample>& samples,
                                    int64_t batch_size, bool vocab_stats);

// Mean NLL −mean(log p) (the LOSS attack's score); NaN for an empty text.
double mean_nll(const TokenStats& s);
// open-unlearning's Min-K %++: z_i = (log p_i − μ_i) / sqrt(max(σ²_i, 1e-6)); −mean of the lowest
// max(1, ⌊k·n⌋) values. 0 for an empty text (as there).
double min_k_plus_plus(const TokenStats& s, double k);
// The fraction of labelled tokens whose argmax is the label.
double exact_memorization(const TokenStats& s);
// 1 − k*/n with k* the smallest k such that the argmax matches the label at every position from k
// on (k* = n when the last token does not match: 0).
double extraction_strength(const TokenStats& s);
// len(zlib.compress(text)) at zlib's default level, as Python's zlib module computes it.
int64_t zlib_compressed_size(const std::string& text);

// The attacks of open-unlearning's MIA suite, each a per-text score signed so that a higher score
// means "less likely a member"; the AUC is roc_auc(forget scores, holdout scores), forget label 0.
enum class Attack { loss, zlib, min_k, min_k_plus_plus, reference };
const char* attack_name(Attack a);
// "loss" → Attack::loss …; throws listing the names.
Attack parse_attack(const std::string& name);

struct TextScores {
  std::vector<double> loss, zlib, min_k, min_k_plus_plus, reference;  // per text (reference: when
                                                                      // a reference model is given)
  std::vector<double> exact_memorization, extraction_strength;
  std::vector<int64_t> zlib_bytes;
  const std::vector<double>& of(Attack a) const;
};

// Scores of `stats` (from token_stats with vocab_stats) — `texts`: each sample's labelled text as
// the tokenizer decodes it (ZLib); `reference`: the same samples under the reference model, or
// null.
TextScores text_scores(const std::vector<TokenStats>& stats, const std::vector<std::string>& texts,
                       const std::vector<TokenStats>* reference, double k);

// Greedy continuations of `prompts` (token ids, BOS included), `batch_size` at a time, left-padded
// through the KV cache: at most `max_new_tokens` each (fewer where the model's context ends),
// stopping at the model's EOS, which is not returned.
std::vector<std::vector<int64_t>> greedy_continuations(
    const models::CausalLM& model, const std::vector<std::vector<int64_t>>& prompts,
    int64_t batch_size, int64_t max_new_tokens);

// exp(Σ NLL / Σ n) over every labelled token of every text (token-weighted, as a corpus).
struct Perplexity {
  double perplexity = 0;
  double nll_sum = 0;
  int64_t tokens = 0;
  std::vector<double> per_text;  // exp(mean NLL) of each text
};
Perplexity perplexity(const std::vector<TokenStats>& stats);

}  // namespace lethe::eval
