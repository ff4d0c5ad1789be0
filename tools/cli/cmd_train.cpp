// `lethe unlearn` and `lethe finetune`: run a recipe (YAML + --set overrides) through the shared
// training loop. Must not hold training logic: it parses, hands the config to trainers::Trainer and
// prints a one-line JSON summary.
#include <cmath>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "engine/dist/communicator.h"
#include "engine/error.h"
#include "eval/runner.h"
#include "tools/cli/cli_util.h"
#include "tools/cli/commands.h"
#include "trainers/classifier.h"
#include "trainers/config.h"
#include "trainers/progress.h"
#include "trainers/trainer.h"

namespace lethe::cli {

namespace {

struct TrainOptions {
  std::string config;
  std::vector<std::string> sets;
  bool keys = false;
  bool print_config = false;
  int64_t stop_after = 0;
};

void run_train(const TrainOptions& o, trainers::RunKind kind) {
  if (o.keys) {
    std::cout << trainers::describe_schema();
    return;
  }
  if (o.config.empty() && o.sets.empty())
    throw CLI::ValidationError(
        "give a recipe with --config R.yaml and/or keys with --set key=value (see `--keys` and "
        "docs/training.md)");
  // A recipe that does not check out (unknown key, bad value, missing key) is a usage error.
  trainers::Config cfg;
  try {
    cfg = trainers::load_config(o.config, o.sets, kind);
  } catch (const Error& e) {
    throw CLI::ValidationError(e.what());
  }
  // The resolved recipe (defaults, the recipe's own keys, --set, schema defaults) is what run.json
  // records under "config"; printed, nothing runs and nothing is read or written.
  if (o.print_config) {
    nlohmann::ordered_json resolved = nlohmann::ordered_json::object();
    for (const auto& [k, v] : cfg.values()) resolved[k] = v;
    std::cout << resolved.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
    return;
  }
  const std::string output = cfg.str("output.dir");
  if (kind == trainers::RunKind::finetune && cfg.str("model.head") == "classifier") {
    // The shared loop with the classifier's objective (checkpoints, resume, data parallel).
    const trainers::ClassifierRun run = trainers::train_classifier(
        cfg, std::cerr, trainers::Progress::stderr_is_terminal(), o.stop_after);
    if (dist::world().rank() != 0) return;  // rank 0 reports for the run
    nlohmann::ordered_json summary;
    summary["output"] = output;
    summary["head"] = "classifier";
    summary["steps"] = run.steps;
    summary["steps_this_run"] = run.steps_this_run;
    summary["final_loss"] = run.losses.empty() ? 0.0 : run.losses.back();
    if (!std::isnan(run.train_accuracy)) summary["train_accuracy"] = run.train_accuracy;
    emit(summary);
    return;
  }
  trainers::TrainerOptions to;
  to.terminal = trainers::Progress::stderr_is_terminal();
  to.stop_after = o.stop_after;
  to.evaluate = eval::tofu_step_metrics(cfg);
  trainers::Trainer trainer(std::move(cfg), to);
  const int64_t ran = trainer.run();
  if (dist::world().rank() != 0) return;  // rank 0 reports for the run
  nlohmann::ordered_json summary;
  summary["output"] = output;
  summary["method"] = trainer.method().name;
  summary["steps"] = trainer.steps().size();
  summary["steps_this_run"] = ran;
  if (!trainer.steps().empty()) {
    const trainers::StepRecord& last = trainer.steps().back();
    for (size_t k = 0; k < trainer.method().objectives.size(); ++k)
      summary["final_loss"][trainer.method().objectives[k].name] = last.losses[k];
  }
  emit(summary);
}

void add(CLI::App& app, const char* name, const char* help, trainers::RunKind kind) {
  auto o = std::make_shared<TrainOptions>();
  CLI::App* cmd = app.add_subcommand(name, help);
  cmd->add_option("--config,-c", o->config, "recipe (YAML); keys in docs/training.md");
  cmd->add_option("--set", o->sets, "override a key: --set trainer.lr=1e-5 (repeatable)")
      ->allow_extra_args(false);
  cmd->add_flag("--keys", o->keys, "list every recipe key with its type and default, and exit");
  cmd->add_flag("--print-config", o->print_config,
                "print the resolved recipe as JSON (every key, as run.json's \"config\") and exit");
  cmd->add_option("--stop-after", o->stop_after,
                  "stop after N steps of this run, leaving a checkpoint to resume from "
                  "(trainer.resume)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  cmd->callback([o, kind] { run_train(*o, kind); });
}

}  // namespace

void add_unlearn_command(CLI::App& app) {
  add(app, "unlearn",
      "unlearn a forget set (GA, GradDiff, ga_mismatch_kl, NPO, SimNPO, MOLLM, NGDiff)",
      trainers::RunKind::unlearn);
}

void add_finetune_command(CLI::App& app) {
  add(app, "finetune",
      "supervised fine-tuning on answer tokens, or a sequence classifier (model.head: classifier)",
      trainers::RunKind::finetune);
}

}  // namespace lethe::cli
