// `lethe eval` and the training loop's TOFU hook: runs the metrics named by a recipe's eval.* keys
// (TOFU, membership inference, MUSE, harmful rate, perplexity) on a model, and renders eval.json,
// eval.csv and the Markdown tables. No metric math here (tofu.h, scoring.h, muse.h, harmful.h,
// text_metrics.h, stats.h).
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/harmful.h"
#include "eval/muse.h"
#include "eval/scoring.h"
#include "eval/settings.h"
#include "eval/tofu.h"
#include "models/causal_lm.h"
#include "models/tokenizer/tokenizer.h"
#include "trainers/config.h"
#include "trainers/trainer.h"

namespace lethe::eval {

struct TofuReport {
  std::vector<TofuSplitResult> splits;
  TofuSummary summary;
};

// The TOFU splits the config names (eval.forget, eval.retain, eval.real_authors,
// eval.world_facts), evaluated on `model`. `reference_forget`: a retain-only model's forget
// truth ratios (for forget quality), or null. `generate`: false skips greedy answers (ROUGE).
TofuReport run_tofu(const models::CausalLM& model, const tokenizer::Tokenizer& tokenizer,
                    const EvalSettings& settings, const std::vector<double>* reference_forget,
                    bool generate = true);

// eval.retain_reference: an eval.json (or a directory holding one) → its forget truth ratios;
// a model directory → that model evaluated on eval.forget. Empty when the key is not set.
std::vector<double> reference_truth_ratios(const EvalSettings& settings,
                                           const tokenizer::Tokenizer& tokenizer);

// The training loop's eval.metrics: tofu hook (TrainerOptions::evaluate): loads the tokenizer
// (model.tokenizer or model.path) and the retain model's truth ratios once, then each call runs
// the TOFU splits on the model being trained. Null when the recipe does not ask for it
// (eval.every_steps 0 or eval.metrics loss).
trainers::EvalHook tofu_step_metrics(const trainers::Config& config);

// Membership inference (eval.mia.*): every attack's per-text scores on both sets and its AUC.
struct MiaReport {
  double k = 0.4;
  std::vector<std::string> forget_texts, holdout_texts;  // the scored (labelled) text, decoded
  TextScores forget, holdout;
  std::vector<std::pair<Attack, double>> auc;  // roc_auc(forget = 0, holdout = 1)
};

// MUSE (eval.muse.*): the metrics whose files are given.
struct MuseReport {
  std::optional<GenerationScores> verbmem, knowmem_forget, knowmem_retain;
  std::optional<PrivLeakResult> privleak;
};

struct HarmfulReport {
  std::string label;  // the harmful class's name
  HarmfulResult after;
  std::optional<HarmfulResult> before;  // eval.harmful.before
};

struct PerplexityReport {
  std::string path;
  Perplexity result;
};

// Everything `lethe eval` measured; each part is present when its keys are given.
struct EvalReport {
  TofuReport tofu;  // splits empty when no TOFU key is given
  std::optional<MiaReport> mia;
  std::optional<MuseReport> muse;
  std::optional<HarmfulReport> harmful;
  std::optional<PerplexityReport> perplexity;
};

nlohmann::ordered_json report_json(const TofuReport& report, const std::string& model_path);
std::string report_markdown(const TofuReport& report);
std::string report_csv(const TofuReport& report);
nlohmann::ordered_json report_json(const EvalReport& report, const std::string& model_path);
std::string report_markdown(const EvalReport& report);
std::string report_csv(const EvalReport& report);

// The parts of `lethe eval` other than TOFU, on a loaded model (also for embedding programs).
std::optional<MiaReport> run_mia(const models::CausalLM& model, const tokenizer::Tokenizer& tok,
                                 const EvalSettings& settings);
std::optional<MuseReport> run_muse(const models::CausalLM& model, const tokenizer::Tokenizer& tok,
                                   const EvalSettings& settings);
std::optional<HarmfulReport> run_harmful(const models::CausalLM& model,
                                         const tokenizer::Tokenizer& tok,
                                         const EvalSettings& settings);
std::optional<PerplexityReport> run_perplexity(const models::CausalLM& model,
                                               const tokenizer::Tokenizer& tok,
                                               const EvalSettings& settings);

// `lethe eval`: loads model.path, runs every part the keys name, writes output.dir/eval.json and
// eval.csv; returns the report (the CLI prints its Markdown).
EvalReport run_eval(const trainers::Config& config);

}  // namespace lethe::eval
