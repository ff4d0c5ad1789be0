// The Llama family's weight map: parameter names and shapes from a config, loading HF checkpoints
// (one file or shards with their index; F16/BF16/F32/F64 → f32; tied or untied head) and saving
// them as transformers' save_pretrained does. No forward math here.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "engine/parameters.h"
#include "models/llama/llama_config.h"
#include "models/weights.h"

namespace lethe::models {

// Every parameter, in transformers' named_parameters() order. Names drop the leading "model."
// ("embed_tokens.weight", "layers.0.self_attn.q_proj.weight", "layers.0.mlp.gate_proj.weight",
// "layers.0.input_layernorm.weight", "norm.weight"); the untied head is "lm_head.weight" (absent
// when tie_word_embeddings).
std::vector<ParamSpec> llama_parameter_specs(const LlamaConfig& config);

// Declares every parameter of `config` (zeros) in `store`, in llama_parameter_specs order.
void declare_llama_parameters(const LlamaConfig& config, ParameterStore& store);

// Reads every parameter of `config` from the checkpoint at `path` (a directory holding
// model.safetensors or model.safetensors.index.json, or a file) into `store` (declared and
// allocated). Names are looked up under "model." and bare (a base LlamaModel's checkpoint); a
// tied model whose file keeps only lm_head.weight reads the embedding from it. Keys it does not
// use go to `warn` (default: stderr), except the rotary inv_freq buffers older checkpoints carry
// (derived from the config). A missing tensor, a wrong shape, a non-float dtype or a non-finite
// value is a lethe::Error naming the file and the tensor.
void load_llama_weights(const LlamaConfig& config, const std::string& path, ParameterStore& store,
                        const std::function<void(const std::string&)>& warn = {});

// The checks of load_llama_weights without reading data or allocating: LlamaModel::load runs it
// first, so sizes the checkpoint does not back are refused before any allocation.
void check_llama_checkpoint(const LlamaConfig& config, const std::string& path);

// Writes `dir`/config.json and `dir`/model.safetensors as save_pretrained does (names under
// "model.", lm_head.weight when untied, the tied head omitted, {"format": "pt"} metadata) through
// temp files + rename. `dtype` (f32, f16 or bf16) is the stored element type; config.json's
// torch_dtype is set to match.
void save_llama_checkpoint(const std::string& dir, const LlamaConfig& config,
                           const ParameterStore& store, DType dtype = DType::f32);

}  // namespace lethe::models
