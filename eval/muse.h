// MUSE's metrics (ALGORITHMS.md; docs/metrics.md): VerbMem (ROUGE-L F1 of greedy continuations of
// forget-text prompts), KnowMem (ROUGE-L F1 of few-shot greedy answers) and PrivLeak (Min-K % AUC
// of forget vs holdout texts against a retrained model's AUC). Sees the model through CausalLM.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "models/causal_lm.h"
#include "models/tokenizer/tokenizer.h"
#include "trainers/data/dataset.h"

namespace lethe::eval {

struct MuseOptions {
  int64_t batch_size = 16;
  int64_t verbmem_max_new_tokens = 128;  // MUSE: 128
  int64_t knowmem_max_new_tokens = 32;   // MUSE: 32
  double k = 0.4;                        // PrivLeak's Min-K % fraction
  double auc_retrain = 0.4772;           // MUSE-News' retrained AUC (Books: 0.5393)
  int64_t max_length = 2048;             // truncation of PrivLeak texts (tokens)
  int64_t max_samples = 0;               // 0 = every record
};

// Greedy generations scored by ROUGE-L F1 (no stemming) × 100 against a target.
struct GenerationScores {
  std::vector<std::string> prompts, targets, generated;
  std::vector<double> rouge_f1;
  double mean = 0;
};

// VerbMem: records with "prompt"/"gt" (MUSE's verbmem files; read as question/answer). Each
// prompt ([BOS] + its tokens) is continued greedily for verbmem_max_new_tokens; the target is gt
// cut to its first verbmem_max_new_tokens tokens.
GenerationScores muse_verbmem(const models::CausalLM& model, const tokenizer::Tokenizer& tok,
                              const std::vector<trainers::data::Record>& records,
                              const MuseOptions& o);

// KnowMem: question/answer records; the prompt is every in-context example as
// "Question: {q}\nAnswer: {a}\n\n" then "Question: {q}\nAnswer: "; the greedy answer (at most
// knowmem_max_new_tokens) is cut at its first "\n\n", then at its first "Question".
GenerationScores muse_knowmem(const models::CausalLM& model, const tokenizer::Tokenizer& tok,
                              const std::vector<trainers::data::Record>& records,
                              const std::vector<trainers::data::Record>& in_context,
                              const MuseOptions& o);

// PrivLeak: per text the Min-k % score (mean of the lowest max(1, ⌊k·n⌋) token log-probs, not
// negated, as MUSE); AUC of forget (label 0) vs holdout (label 1) on it; PrivLeak =
// (AUC − auc_retrain) / auc_retrain × 100. A memorised forget set gives AUC near 0 (PrivLeak near
// −100); a model that never saw either set gives about auc_retrain (PrivLeak near 0).
struct PrivLeakResult {
  std::vector<double> forget_scores, holdout_scores;
  double auc = 0, auc_retrain = 0, privleak = 0;
};
PrivLeakResult muse_privleak(const models::CausalLM& model, const tokenizer::Tokenizer& tok,
                             const std::vector<trainers::data::Record>& forget,
                             const std::vector<trainers::data::Record>& holdout,
                             const MuseOptions& o);

// KnowMem's cut of a generated answer: at the first "\n\n", then at the first "Question".
std::string knowmem_cut(std::string generated);

}  // namespace lethe::eval
