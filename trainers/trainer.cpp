// The shared training loop (docs/methods.md, docs/training.md).
#include "trainers/trainer.h"

#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <limits>
#include <map>
#include <numeric>
#include <tuple>

#include "engine/autograd.h"
#include "engine/device_backend.h"  // TODO(issue 21): remove (clipping and GeN: scale_, axpy_)
#include "engine/dist/communicator.h"
#include "engine/error.h"
#include "engine/io/file_util.h"
#include "engine/io/json.h"
#include "engine/io/safetensors.h"
#include "engine/lr_schedule.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/threads.h"
#include "models/lora.h"
#include "models/tokenizer/tokenizer.h"
#include "trainers/batch.h"
#include "trainers/checkpoint_state.h"
#include "trainers/eval/runner.h"
#include "trainers/progress.h"

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

constexpr double kEps = 1e-8;

// splitmix64: the stateless generator behind shuffling, pairing and dropout seeds, so every
// draw is a pure function of (seed, what, index) and a resumed run draws what an uninterrupted
// one would.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}
uint64_t draw(uint64_t seed, uint64_t stream, uint64_t a, uint64_t b = 0) {
  return mix(mix(mix(seed ^ mix(stream)) ^ a) ^ b);
}
enum Stream : uint64_t { kShuffle = 1, kPairing = 2, kRandomAnswers = 3, kDropout = 4 };

std::vector<int64_t> permutation(int64_t n, uint64_t seed, int64_t epoch, bool shuffle) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), 0);
  if (!shuffle) return p;
  for (int64_t i = n - 1; i > 0; --i) {
    const int64_t j = static_cast<int64_t>(
        draw(seed, kShuffle, static_cast<uint64_t>(epoch), static_cast<uint64_t>(i)) %
        static_cast<uint64_t>(i + 1));
    std::swap(p[static_cast<size_t>(i)], p[static_cast<size_t>(j)]);
  }
  return p;
}

const char* batch_name(BatchKind b) {
  switch (b) {
    case BatchKind::forget: return "forget";
    case BatchKind::retain: return "retain";
    case BatchKind::random: return "random";
  }
  return "?";
}

void require_exists(const Config& c, const std::string& key, bool directory) {
  if (!c.has(key)) return;
  const std::string path = c.str(key);
  if (directory)
    io::require_directory(path, key.c_str());
  else
    io::require_regular_file(path, key.c_str());
}

}  // namespace

struct Trainer::Impl {
  Config cfg;
  TrainerOptions opts;
  std::ostream* log = &std::cerr;
  std::ostream null_log{nullptr};
  Method method;
  std::unique_ptr<tokenizer::Tokenizer> tok;
  std::vector<double> tofu_reference;  // eval.metrics: tofu — the retain model's truth ratios
  std::unique_ptr<models::CausalLM> model, reference;
  // LoRA (lora.enabled): the trained adapter, and the starting adapter of the reference forward
  // (null: the base model with the adapters off).
  std::unique_ptr<models::LoraAdapter> adapter, ref_adapter;
  std::vector<data::Sample> drive, retain, eval_forget, eval_retain;
  std::unique_ptr<Optimizer> optimizer;
  std::vector<int> sets;  // one gradient set per objective
  Tensor direction;
  int64_t batch = 1, accum = 1, mb_per_epoch = 1, total = 0, warmup = 0;
  // Data parallel (docs/distributed.md): `batch` samples per rank, gbatch = batch · ranks per
  // global micro-batch; rank r reads its slice [r·batch, (r+1)·batch) of every global one.
  dist::Communicator* comm = nullptr;
  int rank = 0, ranks = 1;
  int64_t gbatch = 1;
  bool zero1 = false;
  std::vector<std::pair<int64_t, int64_t>> shards;  // ZeRO-1: each rank's optimizer range
  uint64_t seed = 0;
  double base_lr = 0;
  std::unique_ptr<LrSchedule> schedule;
  std::vector<StepRecord> history;
  std::vector<EvalRecord> evals;
  int64_t start_step = 0;  // steps done before this invocation (resume)
  double best_score = -std::numeric_limits<double>::infinity();
  int64_t best_step = -1;
  // The epoch whose order is cached.
  int64_t cached_epoch = -1;
  std::vector<int64_t> order;

  fs::path out_dir() const { return fs::path(cfg.str("output.dir")); }

  // ---- data order -----------------------------------------------------------------------------
  // Rows of global micro-batch m (the epoch's last may be short) and its i-th sample.
  int64_t global_rows(int64_t m) const {
    const int64_t n = static_cast<int64_t>(drive.size()), j = m % mb_per_epoch;
    return std::max<int64_t>(0, std::min(n, (j + 1) * gbatch) - j * gbatch);
  }
  const data::Sample* drive_at(int64_t m, int64_t i) {
    const int64_t epoch = m / mb_per_epoch, j = m % mb_per_epoch;
    if (epoch != cached_epoch) {
      order =
          permutation(static_cast<int64_t>(drive.size()), seed, epoch, cfg.flag("data.shuffle"));
      cached_epoch = epoch;
    }
    return &drive[static_cast<size_t>(order[static_cast<size_t>(j * gbatch + i)])];
  }
  // This rank's slice [rank·batch, (rank+1)·batch) of global micro-batch m.
  std::vector<const data::Sample*> drive_batch(int64_t m) {
    std::vector<const data::Sample*> out;
    const int64_t begin = rank * batch, end = std::min(global_rows(m), begin + batch);
    for (int64_t i = begin; i < end; ++i) out.push_back(drive_at(m, i));
    return out;
  }
  int64_t retain_index(int64_t m, int64_t i, Stream stream) const {
    const int64_t n = static_cast<int64_t>(retain.size());
    if (cfg.str("data.pairing") == "sequential") return (m * gbatch + i) % n;
    return static_cast<int64_t>(
        draw(seed, stream, static_cast<uint64_t>(m), static_cast<uint64_t>(i)) %
        static_cast<uint64_t>(n));
  }
  std::vector<const data::Sample*> retain_batch(int64_t m, int64_t rows) const {
    std::vector<const data::Sample*> out;
    for (int64_t i = 0; i < rows; ++i)
      out.push_back(&retain[static_cast<size_t>(retain_index(m, rank * batch + i, kPairing))]);
    return out;
  }
  // Forget prompts × K random retain answers (ga_mismatch_kl), sample i·K + k.
  std::vector<data::Sample> random_samples(int64_t m,
                                           const std::vector<const data::Sample*>& fb) const {
    std::vector<data::Sample> out;
    const int64_t K = method.num_random_answers;
    for (const data::Sample* f : fb) {
      const std::vector<int64_t> prompt = sample_prompt(*f);
      for (int64_t k = 0; k < K; ++k) {
        // sequential: retain samples (m·B + B + k) mod N; random: the pairing stream's own draws
        const int64_t r = retain_index(m, gbatch + k, kRandomAnswers);
        const std::vector<int64_t> answer = sample_answer(retain[static_cast<size_t>(r)]);
        data::Sample s;
        s.input_ids = prompt;
        s.labels.assign(prompt.size(), -100);
        s.input_ids.insert(s.input_ids.end(), answer.begin(), answer.end());
        s.labels.insert(s.labels.end(), answer.begin(), answer.end());
        const size_t max_len =
            static_cast<size_t>(std::min(cfg.integer("data.max_length"), model->max_positions()));
        if (s.input_ids.size() > max_len) {
          s.input_ids.resize(max_len);
          s.labels.resize(max_len);
        }
        out.push_back(std::move(s));
      }
    }
    return out;
  }

  struct Batches {
    std::map<BatchKind, MicroBatch> mb;
  };
  Batches make_batches(int64_t m, int64_t forget_length = 0, int64_t retain_length = 0) {
    Batches b;
    const std::vector<const data::Sample*> fb = drive_batch(m);
    if (fb.empty()) return b;  // this rank's share of the epoch's last micro-batch is empty
    const int64_t pad = model->pad_token_id();
    if (method.reads(BatchKind::forget)) b.mb[BatchKind::forget] = collate(fb, pad, forget_length);
    if (method.reads(BatchKind::retain))
      b.mb[BatchKind::retain] =
          collate(retain_batch(m, static_cast<int64_t>(fb.size())), pad, retain_length);
    if (method.reads(BatchKind::random)) {
      std::vector<data::Sample> rs = random_samples(m, fb);
      std::vector<const data::Sample*> ptrs;
      for (const data::Sample& s : rs) ptrs.push_back(&s);
      b.mb[BatchKind::random] = collate(ptrs, pad);
    }
    return b;
  }
  // The `kl` loss counts every position, padding included (docs/methods.md), so its value depends
  // on the padded length. Every micro-batch of step s, on every rank, is padded to the longest
  // sample of the step's whole batch (all grad_accum micro-batches, all ranks' slices) for the
  // batch kinds a `kl` objective reads: N ranks × B × accum A compute what one batch of N·B·A
  // computes. 0 when no `kl` objective reads `kind` (each micro-batch pads to its own longest).
  int64_t kl_length(int64_t s, BatchKind kind) {
    bool kl = false;
    for (const Objective& o : method.objectives)
      kl = kl || (o.loss == LossKind::kl && o.batch == kind);
    if (!kl) return 0;
    int64_t longest = 0;
    for (int64_t a = 0; a < accum; ++a) {
      const int64_t m = s * accum + a;
      for (int64_t i = 0; i < global_rows(m); ++i) {
        const data::Sample* x = kind == BatchKind::forget
                                    ? drive_at(m, i)
                                    : &retain[static_cast<size_t>(retain_index(m, i, kPairing))];
        longest = std::max<int64_t>(longest, static_cast<int64_t>(x->input_ids.size()));
      }
    }
    return longest;
  }

  // ---- set-up -----------------------------------------------------------------------------------
  void setup() {
    if (opts.log) log = opts.log;
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
    seed = static_cast<uint64_t>(cfg.integer("trainer.seed"));
    set_cpu_threads(cfg.integer("trainer.threads"), "trainer.threads");
    set_matmul_precision(cfg.str("model.dtype") == "bf16" ? MatmulPrecision::bf16
                                                          : MatmulPrecision::f32);
    // Every input path before any loading.
    require_exists(cfg, "model.path", true);
    require_exists(cfg, "model.reference", true);
    require_exists(cfg, "model.tokenizer", true);
    for (const char* k : {"data.forget", "data.retain", "data.train", "eval.forget", "eval.retain"})
      require_exists(cfg, k, false);
    Device device = Device::parse(cfg.str("model.device"));
    // model.device: cuda under mpirun: one GPU per rank, the rank's local index on its machine.
    if (ranks > 1 && cfg.str("model.device") == "cuda") device = Device::cuda(dist::local_rank());
    if (ranks > 1) comm = &dist::for_device(device);  // NCCL for CUDA buffers, MPI for CPU ones

    const data::Format format = data::parse_format(cfg.str("data.format"));
    auto format_of = [&](const std::string& key) {
      const std::string specific = key == "data.forget"   ? "data.forget_format"
                                   : key == "data.retain" ? "data.retain_format"
                                                          : "";
      return specific.empty() || !cfg.has(specific) ? format
                                                    : data::parse_format(cfg.str(specific));
    };
    bool text = cfg.has("model.tokenizer");
    for (const char* k : {"data.forget", "data.retain", "data.train", "eval.forget", "eval.retain"})
      text = text || (cfg.has(k) && format_of(k) != data::Format::tokenized);
    if (text) {
      tok = tokenizer::load_tokenizer(cfg.str_or("model.tokenizer", cfg.str("model.path")));
    }

    // Resume: the weights come from the last checkpoint.
    const fs::path ckpt = out_dir() / "checkpoint";
    std::string weights_dir = cfg.str("model.path");
    if (cfg.flag("trainer.resume")) {
      LETHE_CHECK(fs::is_directory(ckpt), cfg.source(), ": trainer.resume is set but ",
                  ckpt.string(), " does not exist (nothing to resume)");
      check_checkpoint_matches(ckpt);
      weights_dir = ckpt.string();
    }
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
      reference = models::load_causal_lm(cfg.str_or("model.reference", cfg.str("model.path")),
                                         device, frozen);
      LETHE_CHECK(reference->vocab_size() == model->vocab_size(), "model.reference: vocabulary ",
                  reference->vocab_size(), " differs from the model's ", model->vocab_size());
    }

    data::SampleOptions so;
    so.prompt_template = cfg.str("data.template");
    so.max_length = cfg.integer("data.max_length");
    so.max_positions = model->max_positions();
    so.add_eos = cfg.flag("data.add_eos");
    so.tokenization = cfg.str("data.tokenization") == "joint" ? data::Tokenization::joint
                                                              : data::Tokenization::separate;
    auto load = [&](const std::string& key) {
      so.format = format_of(key);
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
    if (cfg.integer("eval.every_steps") > 0 && cfg.str("eval.metrics") == "tofu") {
      LETHE_CHECK(tok != nullptr, cfg.source(),
                  ": eval.metrics: tofu needs a tokenizer (model.tokenizer, or text data)");
      LETHE_CHECK(cfg.has("eval.forget") || cfg.has("eval.retain") ||
                      cfg.has("eval.real_authors") || cfg.has("eval.world_facts"),
                  cfg.source(),
                  ": eval.metrics: tofu needs TOFU *_perturbed files in eval.forget, "
                  "eval.retain, eval.real_authors or eval.world_facts");
      tofu_reference = eval::reference_truth_ratios(cfg, *tok);
    }
    const std::string sel = cfg.str("eval.select");
    LETHE_CHECK(sel == "score" || cfg.str("eval.metrics") == "tofu", cfg.source(),
                ": eval.select: ", sel, " needs eval.metrics: tofu");
    LETHE_CHECK(sel != "forget_quality" || cfg.has("eval.retain_reference"), cfg.source(),
                ": eval.select: forget_quality needs eval.retain_reference");
    if (cfg.integer("eval.every_steps") > 0) {
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
    const int64_t n = static_cast<int64_t>(drive.size());
    gbatch = batch * ranks;
    mb_per_epoch = (n + gbatch - 1) / gbatch;
    total = cfg.integer("trainer.max_steps");
    if (total == 0) {
      const double mbs = cfg.num("trainer.epochs") * static_cast<double>(mb_per_epoch);
      total = static_cast<int64_t>(std::ceil(mbs / static_cast<double>(accum) - 1e-9));
    }
    LETHE_CHECK(total >= 1, cfg.source(), ": the run has no steps (trainer.epochs ",
                cfg.str("trainer.epochs"), ", trainer.max_steps ", cfg.str("trainer.max_steps"),
                ")");
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
    schedule = std::make_unique<LrSchedule>(parse_lr_schedule_kind(cfg.str("trainer.scheduler")),
                                            1.0, warmup, total);

    // Optimizer, gradient sets, the direction buffer.
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
    // The update direction is written over gradient set 0 (combine scales it in place and adds
    // the others): no buffer of the model's size of its own. Set 0 is zeroed before each step's
    // backward passes and read by nothing after the combination.
    direction = store.flat_grad(0);

    if (cfg.flag("trainer.resume")) restore(ckpt);
  }

  // ---- one step ---------------------------------------------------------------------------------
  // Reference outputs for the objectives on one micro-batch kind.
  // The reference model's output (hidden states + head): model.reference, or the starting model —
  // with LoRA the same base weights with the starting adapter (or none), so no second copy of the
  // base is held.
  HeadOutput reference_output(const Tensor& ids, const Tensor& mask) {
    if (reference)
      return HeadOutput(reference->hidden_states(ids, mask), reference->lm_head_weight());
    if (!adapter) return HeadOutput(model->hidden_states(ids, mask), model->lm_head_weight());
    model->set_linear_fn(ref_adapter ? ref_adapter->hook() : models::LinearFn());
    Tensor hidden;
    try {
      hidden = model->hidden_states(ids, mask);
    } catch (...) {
      model->set_linear_fn(adapter->hook());
      throw;
    }
    model->set_linear_fn(adapter->hook());
    return HeadOutput(hidden, model->lm_head_weight());
  }
  // The model's output on a micro-batch, for the losses (the fused head reads it).
  HeadOutput model_output(const MicroBatch& mb, const models::ForwardOptions& fo = {}) {
    return HeadOutput(model->hidden_states(mb.ids, mb.mask, fo), model->lm_head_weight());
  }
  // The parameters that train: the adapter's with LoRA, else the model's.
  ParameterStore& train_store() { return adapter ? adapter->parameters() : model->parameters(); }

  StepRecord step(int64_t s) {
    const auto t0 = std::chrono::steady_clock::now();
    ParameterStore& store = train_store();
    const size_t K = method.objectives.size();
    StepRecord rec;
    rec.step = s + 1;
    rec.losses.assign(K, 0.0);

    std::vector<Batches> mbs;
    const int64_t forget_length = kl_length(s, BatchKind::forget),
                  retain_length = kl_length(s, BatchKind::retain);
    for (int64_t a = 0; a < accum; ++a)
      mbs.push_back(make_batches(s * accum + a, forget_length, retain_length));
    std::vector<double> counts(K, 0.0);
    for (const Batches& b : mbs)
      for (size_t k = 0; k < K; ++k) {
        auto it = b.mb.find(method.objectives[k].batch);
        if (it != b.mb.end()) counts[k] += item_count(method.objectives[k], it->second);
      }
    comm->all_reduce_host(counts);  // every rank normalises by the global counts
    for (int set : sets) store.zero_grads(set);
    struct PendingLoss {
      size_t objective;
      BatchKind kind;
      int64_t micro_batch;
      Tensor value;
    };
    std::vector<PendingLoss> losses;

    for (int64_t a = 0; a < accum; ++a) {
      const int64_t m = s * accum + a;
      for (auto& [kind, mb] : mbs[static_cast<size_t>(a)].mb) {
        std::vector<size_t> on;
        for (size_t k = 0; k < K; ++k)
          if (method.objectives[k].batch == kind && counts[k] > 0) on.push_back(k);
        if (on.empty()) continue;
        // On the host: the fused head checks them there and copies them over (no device sync).
        const Tensor& targets = mb.targets;
        ReferenceOutputs ref;
        {
          NoGradGuard ng;
          bool want_logits = false, want_nll = false;
          for (size_t k : on) {
            want_logits = want_logits || needs_reference_logits(method.objectives[k].loss);
            want_nll = want_nll || needs_reference_nll(method.objectives[k].loss);
          }
          if (want_logits || want_nll) {
            const HeadOutput ro = reference_output(mb.ids, mb.mask);
            if (want_nll) ref.seq_nll = sequence_nll(ro, targets);
            if (want_logits) ref.logits = ro.logits();
          }
        }
        models::ForwardOptions fo;
        fo.training = true;
        fo.dropout_seed =
            draw(seed, kDropout, static_cast<uint64_t>(m), static_cast<uint64_t>(kind));
        if (adapter) adapter->set_training(true, fo.dropout_seed);
        const HeadOutput out = model_output(mb, fo);
        if (adapter) adapter->set_training(false, 0);
        for (double v : mb.mask.to_double_vector()) rec.tokens += v;
        for (size_t i = 0; i < on.size(); ++i) {
          const size_t k = on[i];
          const Objective& o = method.objectives[k];
          Tensor loss =
              scale(item_sum(o, method.params, mb, out, targets, ref), o.sign / counts[k]);
          // Read after every backward of the step (one device sync per step, not per objective).
          losses.push_back({k, kind, m, loss.detach()});
          store.bind_grads(sets[k]);
          loss.backward(Tensor(), /*retain_graph=*/i + 1 < on.size());
        }
      }
    }
    store.bind_grads(0);
    for (const PendingLoss& p : losses) {
      const double v = p.value.item();
      LETHE_CHECK(std::isfinite(v), "step ", s + 1, ": the ", method.objectives[p.objective].name,
                  " loss on the ", batch_name(p.kind), " micro-batch ", p.micro_batch, " is ", v,
                  "; stopping (the last checkpoint in ", out_dir().string(),
                  " is kept). Lower trainer.lr or check the data.");
      rec.losses[p.objective] += v;
    }
    if (ranks > 1) {
      // Each objective's gradient summed over the ranks before any norm, Gram matrix or rule:
      // N ranks × B samples give the update of 1 rank × N·B. Under ZeRO-1 only this rank's
      // range is reduced (reduce-scatter): the Gram matrix is then summed from the ranges.
      const auto c0 = std::chrono::steady_clock::now();
      for (int set : sets) {
        Tensor g = store.flat_grad(set);
        if (zero1) {
          comm->reduce_scatter_ranges(g, shards);
        } else {
          comm->all_reduce(g);
        }
      }
      rec.comm_seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - c0).count();
      std::vector<double> logged = rec.losses;
      logged.push_back(rec.tokens);
      comm->all_reduce_host(logged);
      rec.tokens = logged.back();
      logged.pop_back();
      rec.losses = logged;
    }

    // The rule: Gram matrix → coefficients → d.
    std::vector<double> gram;
    if (zero1) {
      const auto [b, e] = shards[static_cast<size_t>(rank)];
      gram = store.gram(sets, b, e);
      comm->all_reduce_host(gram);
    } else {
      gram = store.gram(sets);
    }
    rec.grad_norms.resize(K);
    for (size_t k = 0; k < K; ++k) rec.grad_norms[k] = std::sqrt(std::max(0.0, gram[k * K + k]));
    Combination comb;
    switch (method.rule) {
      case Rule::weighted: comb = combine_weighted(gram, method.weights); break;
      case Rule::ngdiff: comb = combine_ngdiff(gram, kEps); break;
      case Rule::mgda: comb = combine_mgda(gram, method.mgda); break;
    }
    rec.weights = comb.weights;
    rec.excluded = comb.excluded;
    rec.solution = comb.solution;
    store.combine(direction, comb.coeffs, sets);
    // ‖d‖ from the Gram matrix, not from another pass over d: d = Σ c_k g_k, so
    // ‖d‖² = Σ_ij c_i c_j G_ij (the Gram matrix is already summed over the ranks under ZeRO-1,
    // where d is right on this rank's range only). Then torch's clipping rule.
    double sq = 0;
    for (size_t i = 0; i < K; ++i)
      for (size_t j = 0; j < K; ++j) sq += comb.coeffs[i] * comb.coeffs[j] * gram[i * K + j];
    rec.direction_norm = std::isnan(sq) ? sq : std::sqrt(std::max(0.0, sq));
    clip_direction(rec.direction_norm, cfg.num("trainer.max_grad_norm"));
    LETHE_CHECK(std::isfinite(rec.direction_norm), "step ", s + 1,
                ": the update direction is not finite (norm ", rec.direction_norm,
                "); stopping (the last checkpoint in ", out_dir().string(), " is kept)");

    const double factor = schedule->factor_at(s);
    optimizer->set_lr(base_lr * factor);
    if (method.gen.enabled && s % method.gen.every == 0 && factor > 0) gen_probe(s, rec, factor);
    rec.lr = optimizer->lr();
    optimizer->step_with(direction);
    if (zero1) {
      Tensor w = store.trainable_weights();
      comm->all_gather_ranges(w, shards);  // each rank updated its own range
    }
    rec.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return rec;
  }

  // torch's clip_grad_norm_ rule on d given its norm: d ·= max_norm / (‖d‖ + 1e-6) when that is
  // below 1 (under ZeRO-1 on this rank's range only, the one the optimizer reads).
  void clip_direction(double norm, double max_norm) {
    if (!(max_norm > 0.0) || !std::isfinite(norm)) return;
    const double coef = max_norm / (norm + 1e-6);
    if (coef >= 1.0) return;
    int64_t b = 0, e = direction.numel();
    if (zero1) std::tie(b, e) = shards[static_cast<size_t>(rank)];
    if (e <= b) return;
    Tensor mine = direction.slice(0, b, e);
    backend(direction.device())
        .axpby(DType::f32, e - b, coef, mine.data_ptr(), 0.0, mine.data_ptr());
  }

  // GeN (docs/methods.md): probe the objective at θ − r·η·u, r ∈ {−1, 0, 1}, on the next
  // micro-batch pair; fit the parabola; move η toward G/H.
  void gen_probe(int64_t s, StepRecord& rec, double factor) {
    ParameterStore& store = train_store();
    const double eta = optimizer->lr();
    Tensor u = optimizer->preview_update(direction);
    if (zero1) comm->all_reduce(u);  // each rank's range of u, zero elsewhere
    Tensor weights = store.trainable_weights();
    const Tensor saved = weights.clone();
    const int64_t m_next = (s + 1) * accum;
    Batches probe;
    {
      // A batch of the forget and retain kinds, whatever the method reads.
      const std::vector<const data::Sample*> fb = drive_batch(m_next);
      if (!fb.empty()) {
        probe.mb[BatchKind::forget] = collate(fb, model->pad_token_id());
        probe.mb[BatchKind::retain] =
            collate(retain_batch(m_next, static_cast<int64_t>(fb.size())), model->pad_token_id());
      }
    }
    const double nf = rec.grad_norms[0] + kEps, nr = rec.grad_norms[1] + kEps;
    auto objective = [&]() {
      NoGradGuard ng;
      auto nll = [&](BatchKind kind) {
        // Item sum and count on this rank's share, summed over the ranks.
        std::vector<double> sc = {0.0, 0.0};
        auto it = probe.mb.find(kind);
        if (it != probe.mb.end()) {
          const MicroBatch& mb = it->second;
          Objective o{"probe", kind, LossKind::nll, 1.0, method.objectives[0].reduction};
          sc[1] = item_count(o, mb);
          if (sc[1] > 0) {
            sc[0] = item_sum(o, method.params, mb, model_output(mb), mb.targets, {}).item();
          }
        }
        comm->all_reduce_host(sc);
        return sc[1] > 0 ? sc[0] / sc[1] : 0.0;
      };
      const double lr_ = nll(BatchKind::retain);
      if (method.gen.objective == "retain") return lr_;
      const double lf = nll(BatchKind::forget);
      if (method.gen.objective == "difference") return lr_ - lf;
      return lr_ / nr - lf / nf;
    };
    kernels::Backend& be = backend(store.device());
    auto at = [&](double r) {
      NoGradGuard ng;
      weights.copy_(saved);
      if (r != 0)
        be.axpby(DType::f32, weights.numel(), -r * eta, u.data_ptr(), 1.0, weights.data_ptr());
      return objective();
    };
    const double lm = at(-1), l0 = at(0), lp = at(1);
    {
      NoGradGuard ng;
      weights.copy_(saved);
    }
    rec.gen_probed = true;
    rec.gen_loss_minus = lm;
    rec.gen_loss_zero = l0;
    rec.gen_loss_plus = lp;
    rec.gen_lr_before = eta;
    double next = eta;
    if (!std::isfinite(lm) || !std::isfinite(l0) || !std::isfinite(lp)) {
      next = eta / 2;
    } else {
      rec.gen_h = (lp + lm - 2 * l0) / (eta * eta);
      rec.gen_g = (lm - lp) / (2 * eta);
      if (rec.gen_h > 0 && rec.gen_g > 0) {
        rec.gen_accepted = true;
        next = 0.9 * eta + 0.1 * std::clamp(rec.gen_g / rec.gen_h, eta / 2, 2 * eta);
      }
    }
    rec.gen_lr_after = next;
    optimizer->set_lr(next);
    base_lr = next / factor;
  }

  // ---- evaluation
  // ---------------------------------------------------------------------------------
  double eval_nll(const std::vector<data::Sample>& set) {
    if (set.empty()) return std::numeric_limits<double>::quiet_NaN();
    NoGradGuard ng;
    double total_loss = 0, count = 0;
    const Objective o{"eval", BatchKind::forget, LossKind::nll, 1.0, Reduction::token_mean};
    // Data-parallel: rank r evaluates batches r, r + ranks, …; sums and counts are reduced.
    const size_t step_size = static_cast<size_t>(batch);
    for (size_t i = static_cast<size_t>(rank) * step_size; i < set.size();
         i += step_size * static_cast<size_t>(ranks)) {
      std::vector<const data::Sample*> ptrs;
      for (size_t j = i; j < std::min(set.size(), i + step_size); ++j) ptrs.push_back(&set[j]);
      const MicroBatch mb = collate(ptrs, model->pad_token_id());
      total_loss += item_sum(o, method.params, mb, model_output(mb), mb.targets, {}).item();
      count += item_count(o, mb);
    }
    std::vector<double> sc = {total_loss, count};
    comm->all_reduce_host(sc);
    total_loss = sc[0];
    count = sc[1];
    return count > 0 ? total_loss / count : std::numeric_limits<double>::quiet_NaN();
  }

  EvalRecord evaluate(int64_t step) {
    EvalRecord e;
    e.step = step;
    e.forget_nll = eval_nll(eval_forget);
    e.retain_nll = eval_nll(eval_retain);
    if (cfg.str("eval.metrics") == "tofu") {
      // Data-parallel inside (trainers/eval/parallel.h): every rank scores and generates its
      // block of each split and all get the same numbers, so they keep the same best checkpoint.
      const eval::TofuReport rep =
          eval::run_tofu(*model, *tok, cfg, tofu_reference.empty() ? nullptr : &tofu_reference);
      e.model_utility = rep.summary.model_utility;
      e.forget_quality = rep.summary.forget_quality;
      for (const eval::TofuSplitResult& r : rep.splits)
        if (r.split == eval::TofuSplit::forget) e.forget_rouge = r.rouge;
    }
    return e;
  }

  // Higher is better: unlearning wants the forget loss up and the retain loss down; fine-tuning
  // wants the held-out loss down (docs/training.md).
  double score(const EvalRecord& e) const {
    const std::string by = cfg.str("eval.select");
    if (by == "model_utility") return e.model_utility;
    if (by == "forget_quality") return e.forget_quality;
    if (cfg.kind() == RunKind::finetune) return -e.retain_nll;
    const double r = std::isnan(e.retain_nll) ? 0.0 : e.retain_nll;
    return e.forget_nll - r;
  }

  // ---- saving -----------------------------------------------------------------------------------
  void copy_tokenizer_files(const fs::path& dst) const {
    const fs::path src = fs::path(cfg.str_or("model.tokenizer", cfg.str("model.path")));
    for (const char* f : {"tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json",
                          "special_tokens_map.json", "tokenizer.model", "generation_config.json"}) {
      const fs::path p = src / f;
      if (!fs::is_regular_file(p) || fs::equivalent(src, dst)) continue;
      io::write_file_atomic((dst / f).string(), io::read_text_file(p.string()));
    }
  }

  nlohmann::ordered_json step_json(const StepRecord& r) const {
    nlohmann::ordered_json j;
    j["step"] = r.step;
    j["lr"] = r.lr;
    for (size_t k = 0; k < method.objectives.size(); ++k) {
      const std::string n = method.objectives[k].name;
      j["loss"][n] = r.losses[k];
      j["grad_norm"][n] = r.grad_norms[k];
      j["weight"][n] = r.weights[k];
      if (method.rule == Rule::mgda) j["excluded"][n] = static_cast<bool>(r.excluded[k]);
    }
    if (!r.solution.empty()) j["solution"] = r.solution;
    j["direction_norm"] = r.direction_norm;
    j["tokens"] = r.tokens;
    j["seconds"] = r.seconds;
    if (ranks > 1) j["comm_seconds"] = r.comm_seconds;
    if (r.gen_probed) {
      j["gen"] = {{"loss_minus", r.gen_loss_minus},
                  {"loss_zero", r.gen_loss_zero},
                  {"loss_plus", r.gen_loss_plus},
                  {"h", r.gen_h},
                  {"g", r.gen_g},
                  {"accepted", r.gen_accepted},
                  {"lr_before", r.gen_lr_before},
                  {"lr_after", r.gen_lr_after}};
    }
    return j;
  }

  static nlohmann::json num(double v) {
    return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
  }

  nlohmann::ordered_json run_json(bool finished) const {
    nlohmann::ordered_json j;
    j["lethe_version"] = LETHE_VERSION_STRING;
    j["command"] = cfg.kind() == RunKind::unlearn ? "unlearn" : "finetune";
    j["recipe"] = cfg.source();
    j["finished"] = finished;
    j["build"] = {{"compiler", __VERSION__}, {"cplusplus", __cplusplus}};
    j["host"] = {{"device", model->device().str()},
                 {"threads", omp_get_max_threads()},
                 {"ranks", ranks},
                 {"communicator", comm ? comm->backend_name() : "single"},
                 {"zero1", zero1}};
    nlohmann::ordered_json c;
    for (const auto& [k, v] : cfg.values()) c[k] = v;
    j["config"] = c;
    if (adapter) {
      const models::LoraConfig& lc = adapter->config();
      j["lora"] = {{"r", lc.r},
                   {"alpha", lc.alpha},
                   {"dropout", lc.dropout},
                   {"targets", lc.targets},
                   {"layers", adapter->layers().size()},
                   {"trainable_parameters", adapter->parameters().trainable_numel()},
                   {"base_parameters", model->parameters().numel()}};
    }
    j["method"]["name"] = method.name;
    for (const auto& [k, v] : method.reported) j["method"]["parameters"][k] = v;
    nlohmann::ordered_json objs = nlohmann::ordered_json::array();
    for (const Objective& o : method.objectives)
      objs.push_back({{"name", o.name}, {"batch", batch_name(o.batch)}, {"sign", o.sign}});
    j["method"]["objectives"] = objs;
    j["data"] = {{"samples", drive.size()},
                 {"retain_samples", retain.size()},
                 {"micro_batches_per_epoch", mb_per_epoch},
                 {"total_steps", total},
                 {"warmup_steps", warmup}};
    nlohmann::ordered_json steps = nlohmann::ordered_json::array();
    for (const StepRecord& r : history) steps.push_back(step_json(r));
    j["steps"] = steps;
    nlohmann::ordered_json ev = nlohmann::ordered_json::array();
    for (const EvalRecord& e : evals) {
      nlohmann::ordered_json row = {
          {"step", e.step}, {"forget_nll", num(e.forget_nll)}, {"retain_nll", num(e.retain_nll)}};
      if (std::isfinite(e.model_utility)) {
        row["model_utility"] = e.model_utility;
        row["forget_rouge"] = num(e.forget_rouge);
        row["forget_quality"] =
            e.forget_quality >= 0 ? nlohmann::json(e.forget_quality) : nlohmann::json(nullptr);
      }
      ev.push_back(row);
    }
    j["eval"] = ev;
    if (best_step >= 0) j["best_step"] = best_step;
    return j;
  }

  void write_model(const fs::path& dir) const {
    fs::create_directories(dir);
    if (adapter && cfg.str("output.format") == "adapter") {
      adapter->save(dir.string());
    } else if (adapter) {
      // The merged checkpoint: W + scaling·BA written, then the base weights put back exactly.
      std::vector<std::pair<Tensor, Tensor>> saved;
      {
        NoGradGuard ng;
        for (const std::string& layer : adapter->layers()) {
          Tensor w = model->parameters().get(layer + ".weight");
          saved.emplace_back(w, w.clone());
        }
      }
      adapter->merge_into(*model);
      try {
        model->save(dir.string(), parse_output_dtype());
      } catch (...) {
        NoGradGuard ng;
        for (auto& [w, c] : saved) w.copy_(c);
        throw;
      }
      NoGradGuard ng;
      for (auto& [w, c] : saved) w.copy_(c);
    } else {
      model->save(dir.string(), parse_output_dtype());
    }
    copy_tokenizer_files(dir);
  }
  DType parse_output_dtype() const {
    const std::string d = cfg.str("output.dtype");
    return d == "bf16" ? DType::bf16 : d == "f16" ? DType::f16 : DType::f32;
  }

  // A checkpoint for resume: weights (f32), optimizer state, trainer state, in a fresh folder
  // renamed over the old one, so a crash leaves either the old or the new checkpoint whole.
  // The optimizer's state buffers at full size: under ZeRO-1 every rank's range gathered (a
  // collective: every rank calls it).
  std::vector<std::pair<std::string, Tensor>> full_state() {
    std::vector<std::pair<std::string, Tensor>> out;
    for (const auto& [name, buf] : optimizer->state_buffers()) {
      if (!zero1) {
        out.emplace_back(name, buf);
        continue;
      }
      Tensor full = Tensor::zeros({train_store().flat_grad_size()}, DType::f32, buf.device());
      full.slice(0, optimizer->shard_begin(), optimizer->shard_end()).copy_(buf);
      comm->all_gather_ranges(full, shards);
      out.emplace_back(name, full);
    }
    return out;
  }

  void save_checkpoint(int64_t steps_done) {
    const std::vector<std::pair<std::string, Tensor>> state = full_state();
    if (rank != 0) {
      comm->barrier();  // rank 0 writes; the others wait for the checkpoint to be whole
      return;
    }
    const fs::path dir = out_dir() / "checkpoint", tmp = out_dir() / "checkpoint.tmp",
                   old = out_dir() / "checkpoint.old";
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    if (adapter) {
      adapter->save(tmp.string());
    } else {
      model->save(tmp.string(), DType::f32);
    }
    std::vector<Tensor> host;  // the optimizer's buffers may live on a GPU
    std::vector<io::TensorToWrite> host_state;
    for (const auto& [name, buf] : state) {
      host.push_back(buf.to(Device::cpu()).contiguous());
      host_state.push_back({name, DType::f32, {buf.numel()}, host.back().data_ptr()});
    }
    io::write_safetensors((tmp / "optimizer.safetensors").string(), host_state);
    nlohmann::ordered_json st = run_json(false);
    st["state"] = {{"steps_done", steps_done},
                   {"optimizer_steps", optimizer->step_count()},
                   {"base_lr", base_lr},
                   {"best_score", num(best_score)},
                   {"best_step", best_step}};
    io::write_json_file((tmp / "trainer_state.json").string(), st);
    fs::remove_all(old);
    if (fs::exists(dir)) fs::rename(dir, old);
    fs::rename(tmp, dir);
    fs::remove_all(old);
    comm->barrier();
  }

  // ---- resume ------------------------------------------------------------------------------
  // A checkpoint is a file like any other a user gives lethe: before the first step every field
  // is checked for type and range against this run, its recipe against this recipe, its shapes
  // against model.path, and its optimizer state for size and finiteness (docs/cli.md). The
  // file at fault is named.

  // The recipe keys that fix a run's trajectory: a checkpoint made under other values would
  // continue another run. Device, threads, logging, saving, evaluation and output may change.
  static bool trajectory_key(const std::string& k) {
    for (const char* prefix : {"method.", "lora.", "data."})
      if (k.rfind(prefix, 0) == 0) return true;
    for (const char* key : {"model.path",
                            "model.reference",
                            "model.adapter",
                            "model.dtype",
                            "trainer.optimizer",
                            "trainer.lr",
                            "trainer.weight_decay",
                            "trainer.beta1",
                            "trainer.beta2",
                            "trainer.eps",
                            "trainer.momentum",
                            "trainer.batch_size",
                            "trainer.grad_accum",
                            "trainer.epochs",
                            "trainer.max_steps",
                            "trainer.warmup_steps",
                            "trainer.warmup_epochs",
                            "trainer.scheduler",
                            "trainer.max_grad_norm",
                            "trainer.seed"})
      if (k == key) return true;
    return false;
  }

  // Checks that the checkpoint in `ckpt` belongs to this run before any weights are read from
  // it: its recipe and its model's shapes (from config.json alone).
  void check_checkpoint_matches(const fs::path& ckpt) {
    const std::string state_path = (ckpt / "trainer_state.json").string();
    io::require_regular_file(state_path, "checkpoint state");
    const nlohmann::json st = io::read_json_file(state_path);
    LETHE_CHECK(st.is_object() && st.contains("config") && st["config"].is_object(), state_path,
                ": no \"config\" object (not a lethe checkpoint state)");
    const nlohmann::json& saved = st["config"];
    for (const auto& [k, v] : cfg.values()) {
      if (!trajectory_key(k)) continue;
      const bool has = saved.contains(k);
      LETHE_CHECK(has && saved[k].is_string() && saved[k].get<std::string>() == v, state_path,
                  ": the checkpoint was made with ", k, " = ", has ? saved[k].dump() : "(unset)",
                  ", this run has ", v,
                  "; resume with the checkpoint's recipe, or start over in another output.dir");
    }
    for (const auto& [k, v] : saved.items())
      LETHE_CHECK(!trajectory_key(k) || cfg.has(k), state_path, ": the checkpoint was made with ",
                  k, " = ", v.dump(), ", this run leaves it unset");
    if (cfg.flag("lora.enabled")) return;  // the adapter's shapes are checked as it loads
    const auto want = models::declared_parameters(cfg.str("model.path"));
    const auto have = models::declared_parameters(ckpt.string());
    const std::string ckpt_config = (ckpt / "config.json").string();
    LETHE_CHECK(want.size() == have.size(), ckpt_config, ": the checkpoint's model has ",
                have.size(), " parameters, model.path's (", cfg.str("model.path"), ") has ",
                want.size(), " (a checkpoint of another model?)");
    for (size_t i = 0; i < want.size(); ++i)
      LETHE_CHECK(want[i] == have[i], ckpt_config, ": parameter '", have[i].first, "' has shape ",
                  shape_str(have[i].second), ", model.path (", cfg.str("model.path"), ") needs '",
                  want[i].first, "' ", shape_str(want[i].second),
                  " (a checkpoint of another model?)");
  }

  void restore(const fs::path& dir) {
    const std::string state_path = (dir / "trainer_state.json").string();
    std::vector<std::string> names;
    for (const Objective& o : method.objectives) names.push_back(o.name);
    CheckpointState cs =
        parse_checkpoint_state(io::read_json_file(state_path), state_path, total, names);

    // The optimizer state: saved at full size; under ZeRO-1 this rank takes its range.
    const std::string opt_path = (dir / "optimizer.safetensors").string();
    io::require_regular_file(opt_path, "checkpoint optimizer state");
    const io::SafetensorsFile f = io::SafetensorsFile::open(opt_path);
    const int64_t full = train_store().flat_grad_size();
    std::vector<std::vector<float>> values;
    for (const auto& [name, buf] : optimizer->state_buffers()) {
      const io::TensorInfo* t = f.find(name);
      LETHE_CHECK(t != nullptr, opt_path, ": state '", name, "' is missing (a checkpoint of ",
                  "another optimizer?)");
      LETHE_CHECK(t->dtype == DType::f32 && t->numel() == full, opt_path, ": state '", name,
                  "' has ", t->numel(), " elements, the optimizer needs ", full);
      const float* data = static_cast<const float*>(t->data);
      for (int64_t i = 0; i < full; ++i)
        LETHE_CHECK(std::isfinite(data[i]), opt_path, ": state '", name,
                    "' holds a non-finite value at element ", i);
      values.emplace_back(data + optimizer->shard_begin(),
                          data + optimizer->shard_begin() + buf.numel());
    }
    // Everything checked: only now does the run take it.
    start_step = cs.steps_done;
    optimizer->set_step_count(cs.optimizer_steps);
    base_lr = cs.base_lr;
    best_score =
        std::isnan(cs.best_score) ? -std::numeric_limits<double>::infinity() : cs.best_score;
    best_step = cs.best_step;
    history = std::move(cs.steps);
    evals = std::move(cs.evals);
    size_t i = 0;
    for (const auto& [name, buf] : optimizer->state_buffers()) {
      Tensor live = buf;
      NoGradGuard ng;
      live.copy_(Tensor::from_vector(values[i], {buf.numel()}));
      ++i;
    }
  }

  int64_t run() {
    Progress progress(*log, total, cfg.integer("trainer.log_every"), opts.terminal);
    const fs::path out = out_dir();
    const bool writer = rank == 0;  // only rank 0 writes files
    if (writer) fs::create_directories(out);
    if (start_step > 0)
      progress.message("lethe: resuming at step " + std::to_string(start_step + 1) + " of " +
                       std::to_string(total));
    const int64_t every_eval = cfg.integer("eval.every_steps");
    const int64_t every_save = cfg.integer("trainer.save_every_steps");
    const bool keep_best = cfg.str("output.keep") == "best";
    int64_t done_here = 0;
    if (every_eval > 0 && start_step == 0) {
      evals.push_back(evaluate(0));  // the starting model: the baseline of every later value
      char buf[160];
      std::snprintf(buf, sizeof buf, "lethe: eval at step 0: forget_nll %.4f retain_nll %.4f",
                    evals.back().forget_nll, evals.back().retain_nll);
      progress.message(buf);
    }
    for (int64_t s = start_step; s < total; ++s) {
      StepRecord rec = step(s);
      history.push_back(rec);
      ++done_here;
      std::vector<std::pair<std::string, double>> shown;
      for (size_t k = 0; k < method.objectives.size(); ++k)
        shown.emplace_back(method.objectives[k].name, rec.losses[k]);
      progress.update(s + 1, shown, rec.lr, rec.tokens, rec.seconds);
      if (every_eval > 0 && ((s + 1) % every_eval == 0 || s + 1 == total)) {
        EvalRecord e = evaluate(s + 1);
        evals.push_back(e);
        char buf[160];
        std::snprintf(buf, sizeof buf, "lethe: eval at step %lld: forget_nll %.4f retain_nll %.4f",
                      static_cast<long long>(s + 1), e.forget_nll, e.retain_nll);
        progress.message(buf);
        if (keep_best && score(e) > best_score) {
          best_score = score(e);
          best_step = s + 1;
          if (writer) write_model(out / "best");
        }
      }
      const bool stop_now = opts.stop_after > 0 && done_here >= opts.stop_after && s + 1 < total;
      if ((every_save > 0 && (s + 1) % every_save == 0 && s + 1 < total) || stop_now)
        save_checkpoint(s + 1);
      if (stop_now) {
        progress.finish();
        if (writer) io::write_json_file((out / "run.json").string(), run_json(false));
        return done_here;
      }
    }
    progress.finish();
    if (!writer) return done_here;
    // The result: the last weights, or the best evaluated ones.
    if (keep_best && best_step >= 0) {
      for (const char* f :
           {"config.json", "model.safetensors", "adapter_config.json", "adapter_model.safetensors"})
        if (fs::exists(out / "best" / f)) fs::rename(out / "best" / f, out / f);
      fs::remove_all(out / "best");
      copy_tokenizer_files(out);
    } else {
      write_model(out);
    }
    io::write_json_file((out / "run.json").string(), run_json(true));
    fs::remove_all(out / "checkpoint");
    return done_here;
  }
};

Trainer::Trainer(Config config, TrainerOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->cfg = std::move(config);
  impl_->opts = options;
  impl_->setup();
}
Trainer::~Trainer() = default;

int64_t Trainer::run() {
  return impl_->run();
}
const Method& Trainer::method() const {
  return impl_->method;
}
const std::vector<StepRecord>& Trainer::steps() const {
  return impl_->history;
}
const std::vector<EvalRecord>& Trainer::evals() const {
  return impl_->evals;
}
int64_t Trainer::total_steps() const {
  return impl_->total;
}
models::CausalLM& Trainer::model() {
  return *impl_->model;
}

}  // namespace lethe::trainers
