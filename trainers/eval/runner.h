// `lethe eval` and the training loop's TOFU hook: runs the TOFU metrics named by a recipe's eval.*
// keys on a model, and renders eval.json, eval.csv and the Markdown table. No metric math here
// (tofu.h, text_metrics.h, stats.h).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/causal_lm.h"
#include "models/tokenizer/tokenizer.h"
#include "trainers/config.h"
#include "trainers/eval/tofu.h"

namespace lethe::trainers::eval {

struct TofuReport {
  std::vector<TofuSplitResult> splits;
  TofuSummary summary;
};

// The TOFU splits the config names (eval.forget, eval.retain, eval.real_authors,
// eval.world_facts), evaluated on `model`. `reference_forget`: a retain-only model's forget
// truth ratios (for forget quality), or null. `generate`: false skips greedy answers (ROUGE).
TofuReport run_tofu(const models::CausalLM& model, const tokenizer::Tokenizer& tokenizer,
                    const Config& config, const std::vector<double>* reference_forget,
                    bool generate = true);

// eval.retain_reference: an eval.json (or a directory holding one) → its forget truth ratios;
// a model directory → that model evaluated on eval.forget. Empty when the key is not set.
std::vector<double> reference_truth_ratios(const Config& config,
                                           const tokenizer::Tokenizer& tokenizer);

nlohmann::ordered_json report_json(const TofuReport& report, const std::string& model_path);
std::string report_markdown(const TofuReport& report);
std::string report_csv(const TofuReport& report);

// `lethe eval`: loads model.path, runs, writes output.dir/eval.json and eval.csv; returns the
// report (the CLI prints its Markdown).
TofuReport run_eval(const Config& config);

}  // namespace lethe::trainers::eval
