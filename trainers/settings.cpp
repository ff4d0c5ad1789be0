// See settings.h: the one place the training loop's keys are read by name.
#include "trainers/settings.h"

#include "engine/error.h"

namespace lethe::trainers {

namespace {

// lora.targets as written: "q_proj,v_proj" or a YAML list "[q_proj, v_proj]".
std::vector<std::string> lora_targets(const Config& cfg) {
  std::string v = cfg.str("lora.targets");
  for (char& c : v)
    if (c == '[' || c == ']' || c == '"' || c == '\'') c = ' ';
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= v.size()) {
    const size_t comma = v.find(',', start);
    std::string t = v.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    t.erase(0, t.find_first_not_of(' '));
    t.erase(t.find_last_not_of(' ') + 1);
    if (!t.empty()) out.push_back(t);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  LETHE_USAGE_CHECK(!out.empty(), cfg.source(), ": lora.targets names no layer");
  return out;
}

}  // namespace

RunSettings settings_of(const Config& c) {
  RunSettings s;
  s.kind = c.kind();
  s.source = c.source();

  ModelSettings& m = s.model;
  m.path = c.str("model.path");
  m.device = c.str("model.device");
  m.bf16 = c.str("model.dtype") == "bf16";
  m.reference = c.str_or("model.reference", "");
  m.tokenizer = c.str_or("model.tokenizer", m.path);
  m.tokenizer_given = c.has("model.tokenizer");
  m.adapter = c.str_or("model.adapter", "");
  m.labels = c.str("model.labels");
  m.classifier = c.str("model.head") == "classifier";

  DataSettings& d = s.data;
  d.forget = c.str_or("data.forget", "");
  d.retain = c.str_or("data.retain", "");
  d.train = c.str_or("data.train", "");
  d.format = data::parse_format(c.str("data.format"));
  d.forget_format =
      c.has("data.forget_format") ? data::parse_format(c.str("data.forget_format")) : d.format;
  d.retain_format =
      c.has("data.retain_format") ? data::parse_format(c.str("data.retain_format")) : d.format;
  d.train_format = d.format;
  d.prompt_template = c.str("data.template");
  d.max_length = c.integer("data.max_length");
  d.add_eos = c.flag("data.add_eos");
  d.tokenization = c.str("data.tokenization") == "joint" ? data::Tokenization::joint
                                                         : data::Tokenization::separate;
  d.shuffle = c.flag("data.shuffle");
  d.sequential_pairing = c.str("data.pairing") == "sequential";

  OptimSettings& t = s.trainer;
  t.adamw = c.str("trainer.optimizer") == "adamw";
  t.lr = c.num("trainer.lr");
  t.weight_decay = c.num("trainer.weight_decay");
  t.beta1 = c.num("trainer.beta1");
  t.beta2 = c.num("trainer.beta2");
  t.eps = c.num("trainer.eps");
  t.momentum = c.num("trainer.momentum");
  t.batch_size = c.integer("trainer.batch_size");
  t.grad_accum = c.integer("trainer.grad_accum");
  t.epochs = c.num("trainer.epochs");
  t.max_steps = c.integer("trainer.max_steps");
  t.warmup_steps = c.integer("trainer.warmup_steps");
  t.warmup_epochs = c.num("trainer.warmup_epochs");
  t.scheduler = c.str("trainer.scheduler");
  t.max_grad_norm = c.num("trainer.max_grad_norm");
  t.seed = static_cast<uint64_t>(c.integer("trainer.seed"));
  t.threads = c.integer("trainer.threads");
  t.save_every_steps = c.integer("trainer.save_every_steps");
  t.log_every = c.integer("trainer.log_every");
  t.resume = c.flag("trainer.resume");
  t.zero1 = c.flag("trainer.zero1");

  LoopEvalSettings& e = s.eval;
  e.every_steps = c.integer("eval.every_steps");
  e.forget = c.str_or("eval.forget", "");
  e.retain = c.str_or("eval.retain", "");
  e.max_samples = c.integer("eval.max_samples");
  e.tofu = c.str("eval.metrics") == "tofu";
  e.select = c.str("eval.select");
  e.retain_reference = c.has("eval.retain_reference");

  LoraSettings& l = s.lora;
  l.enabled = c.flag("lora.enabled");
  l.r = c.integer("lora.r");
  l.alpha = c.num("lora.alpha");
  l.dropout = c.num("lora.dropout");
  if (l.enabled) l.targets = lora_targets(c);
  l.init = c.str("lora.init");

  OutputSettings& o = s.output;
  o.dir = c.str("output.dir");
  o.adapter_only = c.str("output.format") == "adapter";
  const std::string dt = c.str("output.dtype");
  o.dtype = dt == "bf16" ? DType::bf16 : dt == "f16" ? DType::f16 : DType::f32;
  o.keep_best = c.str("output.keep") == "best";
  return s;
}

}  // namespace lethe::trainers
