// `lethe merge --model BASE --adapter DIR --output OUT`: a LoRA adapter (PEFT layout) merged into
// its base model's weights, written as a full HuggingFace checkpoint. No LoRA math here
// (models/lora.h).
#include <filesystem>
#include <memory>
#include <string>

#include "engine/error.h"
#include "engine/io/file_util.h"
#include "models/causal_lm.h"
#include "models/lora.h"
#include "models/tokenizer/files.h"
#include "tools/cli/cli_util.h"
#include "tools/cli/commands.h"

namespace fs = std::filesystem;

namespace lethe::cli {

namespace {

struct MergeOptions {
  std::string model, adapter, output, dtype = "f32";
};

void run_merge(const MergeOptions& o) {
  io::require_directory(o.model, "--model");
  io::require_directory(o.adapter, "--adapter");
  // The merged model never goes where the base or the adapter is (docs/cli.md).
  for (const auto& [flag, input] :
       {std::pair<const char*, std::string>{"--model", o.model}, {"--adapter", o.adapter}}) {
    const io::PathRelation r = io::path_relation(o.output, input);
    if (r == io::PathRelation::apart) continue;
    throw UsageError(std::string("--output (") + o.output + ") " + io::path_relation_words(r) +
                     " " + flag + " (" + input + "): lethe never writes where its inputs are");
  }
  io::require_writable_directory(o.output, "--output");
  const DType dtype = o.dtype == "bf16" ? DType::bf16 : o.dtype == "f16" ? DType::f16 : DType::f32;
  auto model = models::load_causal_lm(o.model, Device::cpu(), {models::none_trainable});
  const auto adapter = models::LoraAdapter::load(*model, o.adapter, false);
  adapter->merge_into(*model);
  fs::create_directories(o.output);
  model->save(o.output, dtype);
  tokenizer::copy_tokenizer_files(o.model, o.output);
  nlohmann::ordered_json out;
  out["output"] = o.output;
  out["layers_merged"] = adapter->layers().size();
  out["r"] = adapter->config().r;
  out["scaling"] = adapter->config().scaling();
  emit(out);
}

}  // namespace

void add_merge_command(CLI::App& app) {
  auto o = std::make_shared<MergeOptions>();
  CLI::App* cmd = app.add_subcommand(
      "merge", "merge a LoRA adapter (PEFT layout) into its base model: a full HF checkpoint");
  cmd->add_option("--model", o->model, "base model directory")->required();
  cmd->add_option("--adapter", o->adapter,
                  "adapter directory (adapter_config.json + "
                  "adapter_model.safetensors)")
      ->required();
  cmd->add_option("--output", o->output, "output directory")->required();
  cmd->add_option("--dtype", o->dtype, "stored dtype")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}));
  cmd->callback([o] { run_merge(*o); });
}

}  // namespace lethe::cli
