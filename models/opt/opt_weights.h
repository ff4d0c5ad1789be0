// OPT's weight map: parameter names and shapes from a config, loading HF checkpoints (either
// prefix, lm_head alias, any float dtype → f32) and saving them as HF does. No forward math here.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "engine/parameters.h"
#include "engine/tensor.h"
#include "models/opt/opt_config.h"
#include "models/weights.h"

namespace lethe::models {

// One parameter of an OPT model: its name without a prefix (HF's names under `model.decoder.`,
// e.g. "layers.0.self_attn.q_proj.weight") and its shape as the config implies.
using OptParamSpec = ParamSpec;

// Every parameter, in transformers' named_parameters() order (lm_head is tied and not listed).
std::vector<OptParamSpec> opt_parameter_specs(const OptConfig& config);

struct OptLoadOptions {
  // Receives each warning (an ignored checkpoint key, ...) once; default: prints to stderr.
  std::function<void(const std::string&)> warn;
};

// Reads every parameter of `config` from the checkpoint at `path` (a directory holding
// model.safetensors or model.safetensors.index.json, or a file) into `store` (declared by
// declare_opt_parameters and allocated). Accepts names under `model.decoder.` or `decoder.`,
// `lm_head.weight` for embed_tokens.weight (directly or through __metadata__ aliases
// {"dropped": "kept"}), F16/BF16/F32/F64 data. Keys it does not use are warned about (once
// each). A missing tensor, a wrong shape or a non-float dtype is a lethe::Error naming the file
// and the tensor (and both shapes); so is a NaN or Inf value in a weight.
void load_opt_weights(const OptConfig& config, const std::string& path, ParameterStore& store,
                      const OptLoadOptions& options = {});

// The checks of load_opt_weights (every tensor present, with the config's shape and a float dtype)
// without reading data or allocating parameters: OptModel::load runs it before it allocates, so
// sizes the checkpoint does not back are refused first. Errors name the file and tensor.
void check_opt_checkpoint(const OptConfig& config, const std::string& path);

// Declares every parameter of `config` (zeros) in `store`, in opt_parameter_specs order.
void declare_opt_parameters(const OptConfig& config, ParameterStore& store);

// Writes `dir`/config.json and `dir`/model.safetensors as transformers' save_pretrained does
// (names under `model.decoder.`, tied head omitted, {"format": "pt"} metadata), each through a
// temp file + rename. `dtype` (f32, f16 or bf16) is the stored element type; config.json's
// torch_dtype is set to match. Creates `dir` if needed.
void save_opt_checkpoint(const std::string& dir, const OptConfig& config,
                         const ParameterStore& store, DType dtype = DType::f32);

}  // namespace lethe::models
