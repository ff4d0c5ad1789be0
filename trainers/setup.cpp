// A run's set-up: the recipe's method, every input path checked, the model (with LoRA, a reference
// model when the method needs one), the tokenizer and the data, the step counts and schedule, the
// optimizer and the gradient sets, then — when resuming — the checkpoint. Everything a user can get
// wrong is found here, before the first step.
#include <cmath>
#include <iostream>

#include "engine/error.h"
#include "engine/io/file_util.h"
#include "engine/ops.h"
#include "engine/threads.h"
#include "trainers/loop_state.h"

namespace fs = std::filesystem;

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

void require_exists(const Config& c, const std::string& key, bool directory) {
  if (!c.has(key)) return;
  const std::string path = c.str(key);
  if (directory)
    io::require_directory(path, key.c_str());
  else
    io::require_regular_file(path, key.c_str());
}

data::Format format_of(const Config& cfg, const std::string& key) {
  const std::string specific = key == "data.forget"   ? "data.forget_format"
                               : key == "data.retain" ? "data.retain_format"
                                                      : "";
  return data::parse_format(specific.empty() || !cfg.has(specific) ? cfg.str("data.format")
                                                                   : cfg.str(specific));
}

}  // namespace

void Trainer::Impl::setup() {
  log = opts.log ? opts.log : &std::cerr;
  comm = &dist::world();
  rank = comm->rank();
  ranks = comm->size();
  if (rank != 0) log = &null_log;  // one progress display: rank 0's
  check_same_recipe_on_every_rank(cfg);
  try {  // a method's keys are the recipe's: a mistake there is a usage error (exit 2)
    method = make_method(cfg);
  } catch (const UsageError&) {
    throw;
  } catch (const Error& e) {
    throw UsageError(e.what());
  }
  // kl_length pads forget and retain batches only: random-answer batches are built per rank.
  for (const Objective& o : method.objectives)
    LETHE_CHECK(!(o.loss == LossKind::kl && o.batch == BatchKind::random), "method ", method.name,
                ": a kl objective over random-answer batches is not supported");
  set_cpu_threads(cfg.integer("trainer.threads"), "trainer.threads");
  set_matmul_precision(cfg.str("model.dtype") == "bf16" ? MatmulPrecision::bf16
                                                        : MatmulPrecision::f32);
  // Every input path before any loading.
  require_exists(cfg, "model.path", true);
  require_exists(cfg, "model.reference", true);
  require_exists(cfg, "model.tokenizer", true);
  for (const char* k : {"data.forget", "data.retain", "data.train", "eval.forget", "eval.retain"})
    require_exists(cfg, k, false);
  bool text = cfg.has("model.tokenizer");
  for (const char* k : {"data.forget", "data.retain", "data.train", "eval.forget", "eval.retain"})
    text = text || (cfg.has(k) && format_of(cfg, k) != data::Format::tokenized);
  if (text) tok = tokenizer::load_tokenizer(cfg.str_or("model.tokenizer", cfg.str("model.path")));

  // Resume: the weights come from the last checkpoint.
  const fs::path ckpt = out_dir() / "checkpoint";
  std::string weights_dir = cfg.str("model.path");
  if (cfg.flag("trainer.resume")) {
    LETHE_CHECK(fs::is_directory(ckpt), cfg.source(), ": trainer.resume is set but ", ckpt.string(),
                " does not exist (nothing to resume)");
    check_checkpoint_matches(ckpt);
    weights_dir = ckpt.string();
  }
  load_models(weights_dir);
  load_data();
  make_optimizer();
  if (cfg.flag("trainer.resume")) restore(ckpt);
}

void Trainer::Impl::load_models(const std::string& weights_dir) {
  Device device = Device::parse(cfg.str("model.device"));
  // model.device: cuda under mpirun: one GPU per rank, the rank's local index on its machine.
  if (ranks > 1 && cfg.str("model.device") == "cuda") device = Device::cuda(dist::local_rank());
  if (ranks > 1) comm = &dist::for_device(device);  // NCCL for CUDA buffers, MPI for CPU ones
  const uint64_t seed = static_cast<uint64_t>(cfg.integer("trainer.seed"));
  const bool lora = cfg.flag("lora.enabled");
  if (lora) {
    // The base stays frozen (no gradient, no optimizer state); the adapter is what trains.
    model = models::load_causal_lm(cfg.str("model.path"), device, {models::none_trainable});
    if (cfg.has("model.adapter"))
      ref_adapter = models::LoraAdapter::load(*model, cfg.str("model.adapter"), false);
    if (cfg.flag("trainer.resume")) {
      adapter = models::LoraAdapter::load(*model, weights_dir, true);
    } else if (cfg.has("model.adapter")) {
      adapter = models::LoraAdapter::load(*model, cfg.str("model.adapter"), true);
    } else {
      models::LoraConfig lc;
      lc.r = cfg.integer("lora.r");
      lc.alpha = cfg.num("lora.alpha");
      lc.dropout = cfg.num("lora.dropout");
      lc.targets = lora_targets(cfg);
      lc.init = cfg.str("lora.init");
      lc.base_model = cfg.str("model.path");
      try {  // lora.* against the model (unknown targets, r above a layer's size): exit 2
        adapter = std::make_unique<models::LoraAdapter>(*model, lc, seed ^ 0x4c6f5241ull);
      } catch (const Error& e) {
        throw UsageError(cfg.source() + ": lora.*: " + e.what());
      }
    }
    model->set_linear_fn(adapter->hook());
  } else {
    model = models::load_causal_lm(weights_dir, device);
    if (cfg.has("model.adapter") && !cfg.flag("trainer.resume")) {
      // Full training from a LoRA target: its adapter merged into the weights first.
      models::LoraAdapter::load(*model, cfg.str("model.adapter"), false)->merge_into(*model);
    }
  }
  if (method.needs_reference() && (!lora || cfg.has("model.reference"))) {
    models::ModelOptions frozen;
    frozen.trainable = models::none_trainable;
    reference = models::load_causal_lm(cfg.str_or("model.reference", cfg.str("model.path")), device,
                                       frozen);
    LETHE_CHECK(reference->vocab_size() == model->vocab_size(), "model.reference: vocabulary ",
                reference->vocab_size(), " differs from the model's ", model->vocab_size());
  }
}

void Trainer::Impl::load_data() {
  data::SampleOptions so;
  so.prompt_template = cfg.str("data.template");
  so.max_length = cfg.integer("data.max_length");
  so.max_positions = model->max_positions();
  so.add_eos = cfg.flag("data.add_eos");
  so.tokenization = cfg.str("data.tokenization") == "joint" ? data::Tokenization::joint
                                                            : data::Tokenization::separate;
  auto load = [&](const std::string& key) {
    so.format = format_of(cfg, key);
    std::vector<data::Sample> s =
        data::load_samples(cfg.str(key), so, tok.get(), model->vocab_size());
    LETHE_CHECK(!s.empty(), cfg.str(key), " (", key, "): no samples");
    return s;
  };
  const bool unlearn = cfg.kind() == RunKind::unlearn;
  drive = load(unlearn ? "data.forget" : "data.train");
  if (unlearn && cfg.has("data.retain")) retain = load("data.retain");
  LETHE_CHECK(!method.reads(BatchKind::retain) || !retain.empty(), cfg.source(), ": method ",
              method.name, " needs data.retain");
  const bool evaluating = cfg.integer("eval.every_steps") > 0;
  if (evaluating && cfg.str("eval.metrics") == "tofu")
    LETHE_CHECK(opts.evaluate != nullptr, cfg.source(),
                ": eval.metrics: tofu is measured by the eval layer (lethe unlearn and lethe "
                "finetune pass it; an embedding program passes eval::tofu_step_metrics as "
                "TrainerOptions::evaluate)");
  const std::string sel = cfg.str("eval.select");
  LETHE_CHECK(sel == "score" || cfg.str("eval.metrics") == "tofu", cfg.source(),
              ": eval.select: ", sel, " needs eval.metrics: tofu");
  LETHE_CHECK(sel != "forget_quality" || cfg.has("eval.retain_reference"), cfg.source(),
              ": eval.select: forget_quality needs eval.retain_reference");
  if (evaluating) {
    const size_t cap = static_cast<size_t>(cfg.integer("eval.max_samples"));
    auto held = [&](const char* key, const std::vector<data::Sample>& fallback) {
      std::vector<data::Sample> s = cfg.has(key) ? load(key) : fallback;
      if (cap > 0 && s.size() > cap) s.resize(cap);
      return s;
    };
    eval_forget = unlearn ? held("eval.forget", drive) : std::vector<data::Sample>{};
    eval_retain = held("eval.retain", unlearn ? retain : drive);
  }

  batch = cfg.integer("trainer.batch_size");
  accum = cfg.integer("trainer.grad_accum");
  DataOrderOptions oo;
  oo.seed = static_cast<uint64_t>(cfg.integer("trainer.seed"));
  oo.shuffle = cfg.flag("data.shuffle");
  oo.sequential_pairing = cfg.str("data.pairing") == "sequential";
  oo.batch = batch;
  oo.rank = rank;
  oo.ranks = ranks;
  oo.max_length = std::min(cfg.integer("data.max_length"), model->max_positions());
  order = std::make_unique<DataOrder>(drive, retain, oo);
  const int64_t mb_per_epoch = order->micro_batches_per_epoch();
  total = cfg.integer("trainer.max_steps");
  if (total == 0) {
    const double mbs = cfg.num("trainer.epochs") * static_cast<double>(mb_per_epoch);
    total = static_cast<int64_t>(std::ceil(mbs / static_cast<double>(accum) - 1e-9));
  }
  LETHE_CHECK(total >= 1, cfg.source(), ": the run has no steps (trainer.epochs ",
              cfg.str("trainer.epochs"), ", trainer.max_steps ", cfg.str("trainer.max_steps"), ")");
  warmup = cfg.integer("trainer.warmup_steps");
  LETHE_CHECK(warmup <= total, cfg.source(), ": trainer.warmup_steps ", warmup,
              " exceeds the run's ", total, " steps");
  if (warmup == 0 && cfg.num("trainer.warmup_epochs") > 0) {
    // capped, so a run shortened by trainer.max_steps still warms up and decays
    const double w = cfg.num("trainer.warmup_epochs") * static_cast<double>(mb_per_epoch) /
                     static_cast<double>(accum);
    warmup = std::min(total, static_cast<int64_t>(std::llround(w)));
  }
  base_lr = cfg.num("trainer.lr");
  schedule = std::make_unique<LrSchedule>(parse_lr_schedule_kind(cfg.str("trainer.scheduler")), 1.0,
                                          warmup, total);
}

void Trainer::Impl::make_optimizer() {
  ParameterStore& store = train_store();
  if (cfg.str("trainer.optimizer") == "adamw") {
    AdamWOptions o;
    o.lr = base_lr;
    o.beta1 = cfg.num("trainer.beta1");
    o.beta2 = cfg.num("trainer.beta2");
    o.eps = cfg.num("trainer.eps");
    o.weight_decay = cfg.num("trainer.weight_decay");
    optimizer = std::make_unique<AdamW>(store, o);
  } else {
    SgdOptions o;
    o.lr = base_lr;
    o.momentum = cfg.num("trainer.momentum");
    o.weight_decay = cfg.num("trainer.weight_decay");
    optimizer = std::make_unique<SGD>(store, o);
  }
  optimizer->set_no_decay([this](const std::string& n) { return model->is_no_decay(n); });
  sets.push_back(0);
  for (size_t k = 1; k < method.objectives.size(); ++k) sets.push_back(store.add_grad_set());
  zero1 = cfg.flag("trainer.zero1") && ranks > 1;
  if (zero1) {
    // Equal ranges of the trainable region (multiples of 16 elements), one per rank.
    const int64_t F = store.flat_grad_size();
    int64_t S = (F + ranks - 1) / ranks;
    S = (S + 15) / 16 * 16;
    for (int r = 0; r < ranks; ++r)
      shards.emplace_back(std::min(F, r * S), std::min(F, (r + 1) * S));
    optimizer->shard(shards[static_cast<size_t>(rank)].first,
                     shards[static_cast<size_t>(rank)].second);
  }
  // The update direction is written over gradient set 0 (combine scales it in place and adds the
  // others): no buffer of the model's size of its own. Set 0 is zeroed before each step's backward
  // passes and read by nothing after the combination.
  direction = store.flat_grad(0);
}

RecordLayout Trainer::Impl::layout() const {
  RecordLayout l;
  for (const Objective& o : method.objectives) l.objectives.push_back(o.name);
  l.excluded = method.rule.reports_excluded;
  l.comm = ranks > 1;
  l.hook_key = method.hooks.report_key;
  return l;
}

}  // namespace lethe::trainers
