// What the model families share about checkpoints: a parameter's spec, copying checkpoint tensors
// into a ParameterStore (any float dtype, non-finite values refused) and writing a store as HF's
// save_pretrained does. No family's names here.
#pragma once

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "engine/io/safetensors.h"
#include "engine/parameters.h"
#include "engine/tensor.h"

namespace lethe::models {

// One parameter: its name in the store and its shape as the config implies.
struct ParamSpec {
  std::string name;
  Shape shape;
};

// A parameter and the checkpoint key that holds it.
struct ResolvedTensor {
  ParamSpec spec;
  std::string key;
};

// F16, BF16, F32 or F64: what a weight may be stored as.
bool is_float_dtype(DType t);

// Checks the checkpoint tensor `key` against `spec` (shape; a float dtype): a lethe::Error naming
// the shard and the tensor, with `context` (the config's sizes) on a shape mismatch.
void check_checkpoint_tensor(const io::SafetensorsIndex& ckpt, const std::string& key,
                             const ParamSpec& spec, const std::string& family,
                             const std::string& context);

// Copies every resolved tensor into `store` (allocated), converting to f32. A NaN or Inf value is a
// lethe::Error naming the shard and the tensor. Returns the keys used.
std::set<std::string> copy_checkpoint_tensors(const io::SafetensorsIndex& ckpt,
                                              const std::vector<ResolvedTensor>& resolved,
                                              ParameterStore& store);

// Writes `dir`/model.safetensors holding each spec's parameter under `prefix(name)` (an empty
// result skips it) as `dtype` (f32, f16 or bf16), with {"format": "pt"} metadata, through a temp
// file + rename. Creates `dir`. `who` names the caller in errors.
void write_checkpoint_tensors(const std::string& dir, const std::vector<ParamSpec>& specs,
                              const ParameterStore& store, DType dtype,
                              const std::function<std::string(const std::string&)>& key_of,
                              const std::string& who);

// config.json's torch_dtype for a stored dtype.
std::string torch_dtype_name(DType dtype);

}  // namespace lethe::models
