// A resolved recipe as typed settings, one struct per section, read from the Config once
// (settings_of) — below the recipe layer the training loop reads these fields, never a string key.
// An optional path that is not set is the empty string. No training logic here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.h"
#include "trainers/config.h"
#include "trainers/data/dataset.h"

namespace lethe::trainers {

struct ModelSettings {
  std::string path;              // model.path
  std::string device;            // model.device: cpu, cuda, cuda:N
  bool bf16 = false;             // model.dtype: bf16
  std::string reference;         // model.reference ("" = a copy of model.path)
  std::string tokenizer;         // model.tokenizer, else model.path
  bool tokenizer_given = false;  // model.tokenizer is set
  std::string adapter;           // model.adapter ("" = none)
  std::string labels;            // model.labels: the classifier's class names, comma-separated
  bool classifier = false;       // model.head: classifier
};

struct DataSettings {
  std::string forget, retain, train;  // "" = not set
  data::Format forget_format = data::Format::tofu, retain_format = data::Format::tofu,
               train_format = data::Format::tofu, format = data::Format::tofu;
  std::string prompt_template;
  int64_t max_length = 512;
  bool add_eos = true;
  data::Tokenization tokenization = data::Tokenization::separate;
  bool shuffle = true;
  bool sequential_pairing = false;
};

struct OptimSettings {
  bool adamw = true;  // trainer.optimizer: adamw or sgd
  double lr = 1e-5, weight_decay = 0.01, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, momentum = 0;
  int64_t batch_size = 4, grad_accum = 8;
  double epochs = 10;
  int64_t max_steps = 0, warmup_steps = 0;
  double warmup_epochs = 0;
  std::string scheduler = "linear";
  double max_grad_norm = 1.0;
  uint64_t seed = 0;
  int64_t threads = 0, save_every_steps = 0, log_every = 1;
  bool resume = false, zero1 = false;
};

struct LoopEvalSettings {
  int64_t every_steps = 0;
  std::string forget, retain;  // held-out sets ("" = the training sets)
  int64_t max_samples = 0;
  bool tofu = false;  // eval.metrics: tofu
  std::string select = "score";
  bool retain_reference = false;  // eval.retain_reference is set
};

struct LoraSettings {
  bool enabled = false;
  int64_t r = 8;
  double alpha = 16, dropout = 0;
  std::vector<std::string> targets;
  std::string init = "kaiming";
};

struct OutputSettings {
  std::string dir;
  bool adapter_only = false;  // output.format: adapter
  DType dtype = DType::f32;
  bool keep_best = false;  // output.keep: best
};

struct RunSettings {
  RunKind kind = RunKind::unlearn;
  std::string source;  // the recipe, for messages
  ModelSettings model;
  DataSettings data;
  OptimSettings trainer;
  LoopEvalSettings eval;
  LoraSettings lora;
  OutputSettings output;
};

// Every field from `config` (checked by load_config already; lora.targets parsed here, an empty
// list a lethe::UsageError).
RunSettings settings_of(const Config& config);

}  // namespace lethe::trainers
