// `lethe inspect`: a checkpoint's config, parameter count and tensors, as JSON Lines.
// Must not build the model or copy tensor data: it reads the safetensors headers (mmap) only.
#include <filesystem>
#include <map>
#include <memory>
#include <sstream>
#include <string>

#include "engine/error.h"
#include "engine/io/file_util.h"
#include "engine/io/safetensors.h"
#include "models/causal_lm.h"
#include "models/llama/llama_config.h"
#include "models/opt/opt_config.h"
#include "tools/cli/cli_util.h"
#include "tools/cli/commands.h"

namespace lethe::cli {

namespace {

namespace fs = std::filesystem;

struct InspectOptions {
  std::string model;
  bool no_tensors = false;
};

// config.json in the model directory (or beside a .safetensors / index file), if present.
std::string find_config(const std::string& model) {
  fs::path p(model);
  fs::path dir = io::file_kind(model) == io::FileKind::directory ? p : p.parent_path();
  if (dir.empty()) dir = ".";
  fs::path config = dir / "config.json";
  return io::file_kind(config.string()) != io::FileKind::missing ? config.string() : std::string();
}

void run_inspect(const InspectOptions& o) {
  LETHE_CHECK(io::file_kind(o.model) != io::FileKind::missing, "--model ", o.model,
              ": no such file or directory");
  io::SafetensorsIndex ckpt = io::open_checkpoint(o.model);

  nlohmann::ordered_json summary;
  summary["model"] = o.model;
  std::string config_path = find_config(o.model);
  if (config_path.empty()) {
    note("no config.json beside " + o.model + "; reporting tensors only");
    summary["family"] = nullptr;
    summary["config"] = nullptr;
  } else {
    // The family from model_type; its config parsed and validated as loading would (an
    // unsupported field is an error naming it), shown with the defaults filled in.
    const std::string family = models::model_family(config_path);
    summary["family"] = family;
    summary["config"] = family == "opt" ? models::load_opt_config(config_path).to_json()
                                        : models::load_llama_config(config_path).to_json();
  }
  nlohmann::ordered_json files = nlohmann::ordered_json::array();
  for (const io::SafetensorsFile& shard : ckpt.shards())
    files.push_back(fs::path(shard.path()).filename().string());
  summary["files"] = files;

  std::vector<std::string> names = ckpt.names();
  int64_t parameters = 0;
  uint64_t bytes = 0;
  std::map<std::string, int64_t> by_dtype;  // dtype name -> elements
  for (const std::string& name : names) {
    const io::TensorInfo& t = ckpt.at(name);
    parameters += t.numel();
    bytes += t.nbytes();
    by_dtype[io::safetensors_dtype_name(t.dtype)] += t.numel();
  }
  summary["tensors"] = names.size();
  summary["parameters"] = parameters;
  summary["bytes"] = bytes;
  summary["dtypes"] = by_dtype;
  summary["metadata"] = ckpt.metadata();
  emit(summary);

  if (!o.no_tensors) {
    for (const std::string& name : names) {
      const io::TensorInfo& t = ckpt.at(name);
      nlohmann::ordered_json line;
      line["name"] = name;
      line["dtype"] = io::safetensors_dtype_name(t.dtype);
      line["shape"] = t.shape;
      line["numel"] = t.numel();
      line["file"] = fs::path(ckpt.shard_of(name).path()).filename().string();
      emit(line);
    }
  }
  std::ostringstream msg;
  msg << names.size() << " tensors, " << parameters << " parameters, " << bytes << " bytes in "
      << ckpt.shards().size() << " file(s)";
  note(msg.str());
}

}  // namespace

void add_inspect_command(CLI::App& app) {
  auto o = std::make_shared<InspectOptions>();
  CLI::App* cmd = app.add_subcommand(
      "inspect", "Show a checkpoint's config, parameter count and tensors (JSON Lines)");
  cmd->add_option("--model", o->model,
                  "Model directory, .safetensors file or model.safetensors.index.json")
      ->required();
  cmd->add_flag("--no-tensors", o->no_tensors, "Print only the summary line");
  cmd->callback([o] { run_inspect(*o); });
}

}  // namespace lethe::cli
