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
#include "trainers/classifier.h"
#include "trainers/loop_state.h"

namespace fs = std::filesystem;

namespace lethe::trainers {

namespace {

// An optional input path ("" = not set) that must exist; `key` names it in the message.
void require_exists(const std::string& path, const char* key, bool directory) {
  if (path.empty()) return;
  if (directory)
    io::require_directory(path, key);
  else
    io::require_regular_file(path, key);
}

}  // namespace

void Trainer::Impl::setup() {
  rs = settings_of(cfg);
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
  set_cpu_threads(rs.trainer.threads, "trainer.threads");
  set_matmul_precision(rs.model.bf16 ? MatmulPrecision::bf16 : MatmulPrecision::f32);
  // Every input path before any loading.
  require_exists(rs.model.path, "model.path", true);
  require_exists(rs.model.reference, "model.reference", true);
  require_exists(rs.model.tokenizer_given ? rs.model.tokenizer : "", "model.tokenizer", true);
  require_exists(rs.data.forget, "data.forget", false);
  require_exists(rs.data.retain, "data.retain", false);
  require_exists(rs.data.train, "data.train", false);
  require_exists(rs.eval.forget, "eval.forget", false);
  require_exists(rs.eval.retain, "eval.retain", false);
  // A tokenizer when one is named or some data is text (the held-out sets are read in
  // data.format).
  bool text = rs.model.tokenizer_given;
  for (const auto& [path, format] : {std::pair{rs.data.forget, rs.data.forget_format},
                                     {rs.data.retain, rs.data.retain_format},
                                     {rs.data.train, rs.data.train_format},
                                     {rs.eval.forget, rs.data.format},
                                     {rs.eval.retain, rs.data.format}})
    text = text || (!path.empty() && format != data::Format::tokenized);
  if (text) tok = tokenizer::load_tokenizer(rs.model.tokenizer);

  // Resume: the weights come from the last checkpoint.
  const fs::path ckpt = out_dir() / "checkpoint";
  std::string weights_dir = rs.model.path;
  if (rs.trainer.resume) {
    LETHE_CHECK(fs::is_directory(ckpt), rs.source, ": trainer.resume is set but ", ckpt.string(),
                " does not exist (nothing to resume)");
    check_checkpoint_matches(ckpt);
    weights_dir = ckpt.string();
  }
  load_models(weights_dir);
  load_data();
  make_optimizer();
  if (rs.trainer.resume) restore(ckpt);
}

void Trainer::Impl::load_models(const std::string& weights_dir) {
  Device device = Device::parse(rs.model.device);
  // model.device: cuda under mpirun: one GPU per rank, the rank's local index on its machine.
  if (ranks > 1 && rs.model.device == "cuda") device = Device::cuda(dist::local_rank());
  if (ranks > 1) comm = &dist::for_device(device);  // NCCL for CUDA buffers, MPI for CPU ones
  const uint64_t seed = rs.trainer.seed;
  const bool lora = rs.lora.enabled;
  if (rs.model.classifier) {
    // A sequence classifier: a saved one continues (and a checkpoint is one), a language model
    // gets a fresh head. The head lives in the backbone's store, so the loop trains both.
    LETHE_CHECK(rs.model.adapter.empty(), rs.source,
                ": model.head classifier trains without model.adapter");
    const std::vector<std::string> labels = classifier_labels(rs);
    classifier =
        rs.trainer.resume || models::SequenceClassifier::is_classifier_dir(weights_dir)
            ? models::SequenceClassifier::load(weights_dir, device, true)
            : models::SequenceClassifier::from_causal_lm(weights_dir, labels, seed, device);
    LETHE_CHECK(classifier->labels().size() == labels.size(), weights_dir, ": the classifier has ",
                classifier->labels().size(), " labels, model.labels names ", labels.size());
    model = &classifier->backbone();
  } else if (lora) {
    // The base stays frozen (no gradient, no optimizer state); the adapter is what trains.
    lm = models::load_causal_lm(rs.model.path, device, {models::none_trainable});
    model = lm.get();
    if (!rs.model.adapter.empty())
      ref_adapter = models::LoraAdapter::load(*model, rs.model.adapter, false);
    if (rs.trainer.resume) {
      adapter = models::LoraAdapter::load(*model, weights_dir, true);
    } else if (!rs.model.adapter.empty()) {
      adapter = models::LoraAdapter::load(*model, rs.model.adapter, true);
    } else {
      models::LoraConfig lc;
      lc.r = rs.lora.r;
      lc.alpha = rs.lora.alpha;
      lc.dropout = rs.lora.dropout;
      lc.targets = rs.lora.targets;
      lc.init = rs.lora.init;
      lc.base_model = rs.model.path;
      try {  // lora.* against the model (unknown targets, r above a layer's size): exit 2
        adapter = std::make_unique<models::LoraAdapter>(*model, lc, seed ^ 0x4c6f5241ull);
      } catch (const Error& e) {
        throw UsageError(rs.source + ": lora.*: " + e.what());
      }
    }
    model->set_linear_fn(adapter->hook());
  } else {
    lm = models::load_causal_lm(weights_dir, device);
    model = lm.get();
    if (!rs.model.adapter.empty() && !rs.trainer.resume) {
      // Full training from a LoRA target: its adapter merged into the weights first.
      models::LoraAdapter::load(*model, rs.model.adapter, false)->merge_into(*model);
    }
  }
  if (method.needs_reference() && (!lora || !rs.model.reference.empty())) {
    models::ModelOptions frozen;
    frozen.trainable = models::none_trainable;
    reference = models::load_causal_lm(
        rs.model.reference.empty() ? rs.model.path : rs.model.reference, device, frozen);
    LETHE_CHECK(reference->vocab_size() == model->vocab_size(), "model.reference: vocabulary ",
                reference->vocab_size(), " differs from the model's ", model->vocab_size());
  }
}

void Trainer::Impl::load_data() {
  data::SampleOptions so;
  so.prompt_template = rs.data.prompt_template;
  so.max_length = rs.data.max_length;
  so.max_positions = model->max_positions();
  so.add_eos = rs.data.add_eos;
  so.tokenization = rs.data.tokenization;
  // key: the recipe key that named `path`, for messages.
  auto load = [&](const std::string& path, data::Format format, const char* key) {
    so.format = format;
    std::vector<data::Sample> s =
        classifier ? classifier_samples(path, rs, *tok, std::min(so.max_length, so.max_positions))
                   : data::load_samples(path, so, tok.get(), model->vocab_size());
    LETHE_CHECK(!s.empty(), path, " (", key, "): no samples");
    return s;
  };
  const bool unlearn = rs.kind == RunKind::unlearn;
  drive = unlearn ? load(rs.data.forget, rs.data.forget_format, "data.forget")
                  : load(rs.data.train, rs.data.train_format, "data.train");
  if (unlearn && !rs.data.retain.empty())
    retain = load(rs.data.retain, rs.data.retain_format, "data.retain");
  LETHE_CHECK(!method.reads(BatchKind::retain) || !retain.empty(), rs.source, ": method ",
              method.name, " needs data.retain");
  const bool evaluating = rs.eval.every_steps > 0;
  if (evaluating && rs.eval.tofu)
    LETHE_CHECK(opts.evaluate != nullptr, rs.source,
                ": eval.metrics: tofu is measured by the eval layer (lethe unlearn and lethe "
                "finetune pass it; an embedding program passes eval::tofu_step_metrics as "
                "TrainerOptions::evaluate)");
  LETHE_CHECK(!(classifier && rs.eval.tofu), rs.source,
              ": eval.metrics: tofu measures a language model, not a classifier (model.head: "
              "classifier evaluates its held-out cross-entropy)");
  const std::string sel = rs.eval.select;
  LETHE_CHECK(sel == "score" || rs.eval.tofu, rs.source, ": eval.select: ", sel,
              " needs eval.metrics: tofu");
  LETHE_CHECK(sel != "forget_quality" || rs.eval.retain_reference, rs.source,
              ": eval.select: forget_quality needs eval.retain_reference");
  if (evaluating) {
    const size_t cap = static_cast<size_t>(rs.eval.max_samples);
    auto held = [&](const std::string& path, const char* key,
                    const std::vector<data::Sample>& fallback) {
      std::vector<data::Sample> s = path.empty() ? fallback : load(path, rs.data.format, key);
      if (cap > 0 && s.size() > cap) s.resize(cap);
      return s;
    };
    eval_forget =
        unlearn ? held(rs.eval.forget, "eval.forget", drive) : std::vector<data::Sample>{};
    eval_retain = held(rs.eval.retain, "eval.retain", unlearn ? retain : drive);
  }

  batch = rs.trainer.batch_size;
  accum = rs.trainer.grad_accum;
  DataOrderOptions oo;
  oo.seed = rs.trainer.seed;
  oo.shuffle = rs.data.shuffle;
  oo.sequential_pairing = rs.data.sequential_pairing;
  oo.batch = batch;
  oo.rank = rank;
  oo.ranks = ranks;
  oo.max_length = std::min(rs.data.max_length, model->max_positions());
  order = std::make_unique<DataOrder>(drive, retain, oo);
  const int64_t mb_per_epoch = order->micro_batches_per_epoch();
  total = rs.trainer.max_steps;
  if (total == 0) {
    const double mbs = rs.trainer.epochs * static_cast<double>(mb_per_epoch);
    total = static_cast<int64_t>(std::ceil(mbs / static_cast<double>(accum) - 1e-9));
  }
  LETHE_CHECK(total >= 1, rs.source, ": the run has no steps (trainer.epochs ", rs.trainer.epochs,
              ", trainer.max_steps ", rs.trainer.max_steps, ")");
  warmup = rs.trainer.warmup_steps;
  LETHE_CHECK(warmup <= total, rs.source, ": trainer.warmup_steps ", warmup, " exceeds the run's ",
              total, " steps");
  if (warmup == 0 && rs.trainer.warmup_epochs > 0) {
    // capped, so a run shortened by trainer.max_steps still warms up and decays
    const double w =
        rs.trainer.warmup_epochs * static_cast<double>(mb_per_epoch) / static_cast<double>(accum);
    warmup = std::min(total, static_cast<int64_t>(std::llround(w)));
  }
  base_lr = rs.trainer.lr;
  schedule = std::make_unique<LrSchedule>(parse_lr_schedule_kind(rs.trainer.scheduler), 1.0, warmup,
                                          total);
}

void Trainer::Impl::make_optimizer() {
  ParameterStore& store = train_store();
  if (rs.trainer.adamw) {
    AdamWOptions o;
    o.lr = base_lr;
    o.beta1 = rs.trainer.beta1;
    o.beta2 = rs.trainer.beta2;
    o.eps = rs.trainer.eps;
    o.weight_decay = rs.trainer.weight_decay;
    optimizer = std::make_unique<AdamW>(store, o);
  } else {
    SgdOptions o;
    o.lr = base_lr;
    o.momentum = rs.trainer.momentum;
    o.weight_decay = rs.trainer.weight_decay;
    optimizer = std::make_unique<SGD>(store, o);
  }
  optimizer->set_no_decay([this](const std::string& n) { return model->is_no_decay(n); });
  sets.push_back(0);
  for (size_t k = 1; k < method.objectives.size(); ++k) sets.push_back(store.add_grad_set());
  zero1 = rs.trainer.zero1 && ranks > 1;
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
