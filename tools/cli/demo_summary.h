// The TOFU demo's results over seeds: the summary.json it writes, the table it prints (the README's
// table is this table, rendered from the committed summary by `lethe demo --render`), and the
// plots with one colour per model and the spread over seeds. No training here: it formats what
// cmd_demo_tofu.cpp measured.
#pragma once

#include <string>
#include <vector>

#include "engine/io/json.h"

namespace lethe::cli {

// The table's columns, in order.
inline const std::vector<std::string>& demo_metrics() {
  static const std::vector<std::string> m = {"forget_quality", "model_utility", "forget_rouge",
                                             "retain_rouge", "forget_prob"};
  return m;
}

// The markdown table of summary.json's "models": one value per cell for one seed; over several
// seeds "mean ± sd" (sample standard deviation), forget quality as "median [min, max]" (a KS
// p-value spans orders of magnitude; its mean would be its largest value's).
std::string demo_table(const nlohmann::json& summary);

// One colour per model, the same in every plot (target black, retain-only grey, one per method).
std::string demo_color(const std::string& model);

// The three SVG plots (forget quality vs utility with every seed's point and the centre; forget
// and retain loss curves with the mean over seeds and a min–max band), written into `dir`.
void write_demo_plots(const nlohmann::json& summary, const std::string& dir);

}  // namespace lethe::cli
