// `lethe eval`: the metrics of a model named by a recipe's eval.* keys (TOFU, MUSE, membership
// inference, harmful rate, perplexity); Markdown tables on stdout, eval.json and eval.csv in
// output.dir. Must not hold metric logic (eval/).
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "engine/dist/communicator.h"
#include "engine/error.h"
#include "eval/runner.h"
#include "tools/cli/cli_util.h"
#include "tools/cli/commands.h"
#include "trainers/config.h"

namespace lethe::cli {

namespace {

struct EvalOptions {
  std::string config;
  std::vector<std::string> sets;
  bool keys = false;
};

void run_eval_command(const EvalOptions& o) {
  if (o.keys) {
    std::cout << trainers::describe_schema();
    return;
  }
  if (o.config.empty() && o.sets.empty())
    throw CLI::ValidationError(
        "give a recipe with --config R.yaml and/or keys with --set key=value (docs/metrics.md)");
  trainers::Config cfg;
  try {
    cfg = trainers::load_config(o.config, o.sets, trainers::RunKind::eval);
  } catch (const Error& e) {
    throw CLI::ValidationError(e.what());
  }
  const eval::EvalReport rep = eval::run_eval(cfg);
  if (dist::world().rank() != 0) return;  // rank 0 reports for a data-parallel evaluation
  std::cout << eval::report_markdown(rep) << std::flush;
  note("wrote " + cfg.str("output.dir") + "/eval.json and eval.csv");
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto o = std::make_shared<EvalOptions>();
  CLI::App* cmd = app.add_subcommand(
      "eval", "metrics of a model: TOFU, MUSE, membership inference, harmful rate, perplexity");
  cmd->add_option("--config,-c", o->config, "recipe (YAML); keys in docs/metrics.md");
  cmd->add_option("--set", o->sets, "override a key: --set eval.forget=FILE (repeatable)");
  cmd->add_flag("--keys", o->keys, "list every recipe key with its type and default, and exit");
  cmd->callback([o] { run_eval_command(*o); });
}

}  // namespace lethe::cli
