// TOFU's metrics (ALGORITHMS.md; docs/metrics.md): answer probability, ROUGE-L recall of greedy
// answers, truth ratio per split; forget quality and model utility across splits. Sees the model
// only through models::CausalLM; batched with padding; greedy generation through the KV cache.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "models/causal_lm.h"
#include "models/tokenizer/tokenizer.h"
#include "trainers/data/dataset.h"

namespace lethe::eval {

enum class TofuSplit { forget, retain, real_authors, world_facts };
const char* tofu_split_name(TofuSplit s);

struct TofuOptions {
  int64_t batch_size = 16;
  int64_t max_new_tokens = 200;
  int64_t max_samples = 0;      // 0 = every record; 300 = the legacy TOFU code's cut
  std::string prompt_template;  // "" = TOFU's default (docs/data.md)
  int64_t max_length = 512;
  bool generate = true;  // ROUGE needs generation; the loss-only hook may skip it
};

struct TofuSplitResult {
  TofuSplit split = TofuSplit::retain;
  std::vector<std::string> questions, answers, generated;
  // Per sample.
  std::vector<double> answer_prob;  // exp(−ℓ/|y|) of the answer
  std::vector<double> probability;  // forget/retain: answer_prob; RA/WF: P(a) / (P(a) + Σ P(pert))
  std::vector<double> rouge_recall;  // of the greedy answer vs the answer (stemmed); NaN if skipped
  std::vector<double> truth_ratio;   // R = P̄_pert / P̄_para (geometric mean over perturbed)
  // Aggregates.
  double prob = 0, rouge = 0;
  double truth = 0;  // forget: mean(min(R, 1/R)); else mean(max(0, 1 − R))
};

// Evaluates one split. `records` are TOFU records with question, answer and perturbed_answer
// (and paraphrased_answer on forget/retain; real-authors/world-facts use the answer itself).
TofuSplitResult evaluate_tofu_split(const models::CausalLM& model,
                                    const tokenizer::Tokenizer& tokenizer,
                                    const std::vector<trainers::data::Record>& records,
                                    TofuSplit split, const TofuOptions& options);

struct TofuSummary {
  double forget_quality =
      -1;  // KS p-value vs the retain reference's forget truth ratios; −1 = none
  double ks_statistic = -1;
  double model_utility = 0;  // harmonic mean of the 9 retain/RA/WF numbers present
  int utility_terms = 0;
};

// Model utility from the retain / real-authors / world-facts results present, and forget
// quality when both forget results are given.
TofuSummary summarize_tofu(const std::vector<TofuSplitResult>& results,
                           const std::vector<double>* reference_forget_truth_ratios);

}  // namespace lethe::eval
