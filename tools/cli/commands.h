// The lethe CLI's subcommands: each cmd_<name>.cpp registers one with add_<name>_command.
// Must not hold command logic itself; shared helpers for output and input live in cli_util.h.
#pragma once

#include <CLI/CLI.hpp>

namespace lethe::cli {

void add_demo_command(CLI::App& app);          // the TOFU demo (cmd_demo_tofu.cpp)
void add_engine_demo_command(CLI::App& demo);  // `lethe demo engine` (cmd_demo.cpp)
void add_bench_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_inspect_command(CLI::App& app);
void add_score_command(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_unlearn_command(CLI::App& app);
void add_finetune_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_merge_command(CLI::App& app);

}  // namespace lethe::cli
