// The training loop (docs/methods.md, docs/training.md): each step builds its micro-batches, runs
// every objective's backward into its own gradient set, sums the sets over the ranks, combines
// them by the method's rule into the direction d, clips, lets the method's hook adjust the rate,
// and applies the optimizer; the run evaluates, checkpoints and reports progress around the steps.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <tuple>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/io/json.h"
#include "engine/ops.h"
#include "models/tokenizer/files.h"
#include "trainers/loop_state.h"
#include "trainers/progress.h"

namespace fs = std::filesystem;

namespace lethe::trainers {

namespace {

// What a method's hook may do between the rule and the update (methods/method.h).
class LoopStepAccess : public StepAccess {
 public:
  LoopStepAccess(Trainer::Impl& t, int64_t s, const StepRecord& rec, double factor)
      : t_(t), s_(s), rec_(rec), factor_(factor) {}
  int64_t step() const override { return s_; }
  double lr() const override { return t_.optimizer->lr(); }
  void set_lr(double lr) override {
    t_.optimizer->set_lr(lr);
    t_.base_lr = lr / factor_;
  }
  double grad_norm(size_t k) const override { return rec_.grad_norms.at(k); }
  Tensor preview_update() override {
    Tensor u = t_.optimizer->preview_update(t_.direction);
    if (t_.zero1) t_.comm->all_reduce(u);  // each rank's range of u, zero elsewhere
    return u;
  }
  Tensor weights() override { return t_.train_store().trainable_weights(); }
  double probe_nll(BatchKind kind, Reduction reduction) override {
    if (!probe_built_) {
      // The forget and retain batches the next step starts with, whatever the method reads.
      const int64_t m = (s_ + 1) * t_.accum;
      const std::vector<const data::Sample*> fb = t_.order->forget_batch(m);
      if (!fb.empty()) {
        const int64_t pad = t_.model->batch_pad_id();
        probe_.mb[BatchKind::forget] = collate(fb, pad);
        probe_.mb[BatchKind::retain] =
            collate(t_.order->retain_batch(m, static_cast<int64_t>(fb.size())), pad);
      }
      probe_built_ = true;
    }
    // Item sum and count on this rank's share, summed over the ranks.
    NoGradGuard ng;
    std::vector<double> sc = {0.0, 0.0};
    auto it = probe_.mb.find(kind);
    if (it != probe_.mb.end()) {
      const MicroBatch& mb = it->second;
      const Objective o{"probe", kind, LossKind::nll, 1.0, reduction};
      sc[1] = item_count(o, mb);
      if (sc[1] > 0)
        sc[0] = item_sum(o, t_.method.params, mb, t_.model_output(mb), mb.targets, {}).item();
    }
    t_.comm->all_reduce_host(sc);
    return sc[1] > 0 ? sc[0] / sc[1] : 0.0;
  }

 private:
  Trainer::Impl& t_;
  int64_t s_;
  const StepRecord& rec_;
  double factor_;
  bool probe_built_ = false;
  Batches probe_;
};

}  // namespace

Batches Trainer::Impl::make_batches(int64_t m, int64_t forget_length, int64_t retain_length) {
  Batches b;
  const std::vector<const data::Sample*> fb = order->forget_batch(m);
  if (fb.empty()) return b;  // this rank's share of the epoch's last micro-batch is empty
  const int64_t pad = model->batch_pad_id();
  if (method.reads(BatchKind::forget)) b.mb[BatchKind::forget] = collate(fb, pad, forget_length);
  if (method.reads(BatchKind::retain))
    b.mb[BatchKind::retain] =
        collate(order->retain_batch(m, static_cast<int64_t>(fb.size())), pad, retain_length);
  if (method.reads(BatchKind::random)) {
    const std::vector<data::Sample> rs = method.hooks.random_batch(*order, m, fb);
    std::vector<const data::Sample*> ptrs;
    for (const data::Sample& s : rs) ptrs.push_back(&s);
    b.mb[BatchKind::random] = collate(ptrs, pad);
  }
  return b;
}

// The `kl` loss counts every position, padding included (docs/methods.md), so its value depends on
// the padded length. Every micro-batch of step s, on every rank, is padded to the longest sample
// of the step's whole batch (all grad_accum micro-batches, all ranks' slices) for the batch kinds
// a `kl` objective reads: N ranks × B × accum A compute what one batch of N·B·A computes. 0 when
// no `kl` objective reads `kind` (each micro-batch pads to its own longest).
int64_t Trainer::Impl::kl_length(int64_t s, BatchKind kind) const {
  for (const Objective& o : method.objectives)
    if (o.loss == LossKind::kl && o.batch == kind) return order->longest(s * accum, accum, kind);
  return 0;
}

// The reference model's output (hidden states + head): model.reference, or the starting model —
// with LoRA the same base weights with the starting adapter (or none), so no second copy of the
// base is held.
HeadOutput Trainer::Impl::reference_output(const Tensor& ids, const Tensor& mask) {
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

HeadOutput Trainer::Impl::model_output(const MicroBatch& mb, const models::ForwardOptions& fo) {
  return HeadOutput(model->hidden_states(mb.ids, mb.mask, fo), head_weight());
}

StepRecord Trainer::Impl::step(int64_t s) {
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
      fo.dropout_seed = order->dropout_seed(m, kind);
      if (adapter) adapter->set_training(true, fo.dropout_seed);
      const HeadOutput out = model_output(mb, fo);
      if (adapter) adapter->set_training(false, 0);
      for (double v : mb.mask.to_double_vector()) rec.tokens += v;
      for (size_t i = 0; i < on.size(); ++i) {
        const size_t k = on[i];
        const Objective& o = method.objectives[k];
        Tensor loss = scale(item_sum(o, method.params, mb, out, targets, ref), o.sign / counts[k]);
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
                " loss on the ", batch_kind_name(p.kind), " micro-batch ", p.micro_batch, " is ", v,
                "; stopping (the last checkpoint in ", out_dir().string(),
                " is kept). Lower trainer.lr or check the data.");
    rec.losses[p.objective] += v;
  }
  if (ranks > 1) {
    // Each objective's gradient summed over the ranks before any norm, Gram matrix or rule: N
    // ranks × B samples give the update of 1 rank × N·B. Under ZeRO-1 only this rank's range is
    // reduced (reduce-scatter): the Gram matrix is then summed from the ranges.
    const auto c0 = std::chrono::steady_clock::now();
    for (int set : sets) {
      Tensor g = store.flat_grad(set);
      if (zero1) {
        comm->reduce_scatter_ranges(g, shards);
      } else {
        comm->all_reduce(g);
      }
    }
    rec.comm_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - c0).count();
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
  const Combination comb = method.rule.combine(gram);
  rec.weights = comb.weights;
  rec.excluded = comb.excluded;
  rec.solution = comb.solution;
  store.combine(direction, comb.coeffs, sets);
  // ‖d‖ from the Gram matrix, not from another pass over d: d = Σ c_k g_k, so
  // ‖d‖² = Σ_ij c_i c_j G_ij (the Gram matrix is already summed over the ranks under ZeRO-1, where
  // d is right on this rank's range only). Then torch's clipping rule.
  double sq = 0;
  for (size_t i = 0; i < K; ++i)
    for (size_t j = 0; j < K; ++j) sq += comb.coeffs[i] * comb.coeffs[j] * gram[i * K + j];
  rec.direction_norm = std::isnan(sq) ? sq : std::sqrt(std::max(0.0, sq));
  clip_direction(rec.direction_norm, rs.trainer.max_grad_norm);
  LETHE_CHECK(std::isfinite(rec.direction_norm), "step ", s + 1,
              ": the update direction is not finite (norm ", rec.direction_norm,
              "); stopping (the last checkpoint in ", out_dir().string(), " is kept)");

  const double factor = schedule->factor_at(s);
  optimizer->set_lr(base_lr * factor);
  if (method.hooks.before_update && factor > 0) {
    LoopStepAccess access(*this, s, rec, factor);
    method.hooks.before_update(access, rec.hook);
  }
  rec.lr = optimizer->lr();
  optimizer->step_with(direction);
  if (zero1) {
    Tensor w = store.trainable_weights();
    comm->all_gather_ranges(w, shards);  // each rank updated its own range
  }
  rec.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rec;
}

// torch's clip_grad_norm_ rule on d given its norm: d ·= max_norm / (‖d‖ + 1e-6) when that is below
// 1 (under ZeRO-1 on this rank's range only, the one the optimizer reads).
void Trainer::Impl::clip_direction(double norm, double max_norm) {
  if (!(max_norm > 0.0) || !std::isfinite(norm)) return;
  const double coef = max_norm / (norm + 1e-6);
  if (coef >= 1.0) return;
  int64_t b = 0, e = direction.numel();
  if (zero1) std::tie(b, e) = shards[static_cast<size_t>(rank)];
  if (e <= b) return;
  Tensor mine = direction.slice(0, b, e);
  NoGradGuard ng;
  scale_(mine, coef);
}

// ---- evaluation ---------------------------------------------------------------------------------

double Trainer::Impl::eval_nll(const std::vector<data::Sample>& set) {
  if (set.empty()) return std::numeric_limits<double>::quiet_NaN();
  NoGradGuard ng;
  double sum = 0, count = 0;
  // A classifier's held-out loss is its cross-entropy per text.
  const Objective o{"eval", BatchKind::forget, classifier ? LossKind::classify : LossKind::nll, 1.0,
                    Reduction::token_mean};
  // Data-parallel: rank r evaluates batches r, r + ranks, …; sums and counts are reduced.
  for_each_batch(
      set, batch, model->batch_pad_id(),
      [&](const MicroBatch& mb, size_t) {
        sum += item_sum(o, method.params, mb, model_output(mb), mb.targets, {}).item();
        count += item_count(o, mb);
      },
      static_cast<size_t>(rank), static_cast<size_t>(ranks));
  std::vector<double> sc = {sum, count};
  comm->all_reduce_host(sc);
  return sc[1] > 0 ? sc[0] / sc[1] : std::numeric_limits<double>::quiet_NaN();
}

EvalRecord Trainer::Impl::evaluate(int64_t step) {
  EvalRecord e;
  e.step = step;
  e.forget_nll = eval_nll(eval_forget);
  e.retain_nll = eval_nll(eval_retain);
  if (rs.eval.tofu) {
    // Data-parallel inside the eval layer: every rank gets the same numbers, so all keep the same
    // best checkpoint.
    const StepMetrics m = opts.evaluate(*model);
    e.model_utility = m.model_utility;
    e.forget_quality = m.forget_quality;
    e.forget_rouge = m.forget_rouge;
  }
  return e;
}

// Higher is better: unlearning wants the forget loss up and the retain loss down; fine-tuning
// wants the held-out loss down (docs/training.md).
double Trainer::Impl::score(const EvalRecord& e) const {
  const std::string by = rs.eval.select;
  if (by == "model_utility") return e.model_utility;
  if (by == "forget_quality") return e.forget_quality;
  if (rs.kind == RunKind::finetune) return -e.retain_nll;
  const double r = std::isnan(e.retain_nll) ? 0.0 : e.retain_nll;
  return e.forget_nll - r;
}

// ---- the run ------------------------------------------------------------------------------------

int64_t Trainer::Impl::run() {
  Progress progress(*log, total, rs.trainer.log_every, opts.terminal);
  const fs::path out = out_dir();
  const bool writer = rank == 0;  // only rank 0 writes files
  if (writer) fs::create_directories(out);
  if (start_step > 0)
    progress.message("lethe: resuming at step " + std::to_string(start_step + 1) + " of " +
                     std::to_string(total));
  const int64_t every_eval = rs.eval.every_steps;
  const int64_t every_save = rs.trainer.save_every_steps;
  const bool keep_best = rs.output.keep_best;
  int64_t done_here = 0;
  auto eval_message = [&](const EvalRecord& e) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "lethe: eval at step %lld: forget_nll %.4f retain_nll %.4f",
                  static_cast<long long>(e.step), e.forget_nll, e.retain_nll);
    progress.message(buf);
  };
  if (every_eval > 0 && start_step == 0) {
    evals.push_back(evaluate(0));  // the starting model: the baseline of every later value
    eval_message(evals.back());
  }
  for (int64_t s = start_step; s < total; ++s) {
    const StepRecord rec = step(s);
    history.push_back(rec);
    ++done_here;
    std::vector<std::pair<std::string, double>> shown;
    for (size_t k = 0; k < method.objectives.size(); ++k)
      shown.emplace_back(method.objectives[k].name, rec.losses[k]);
    progress.update(s + 1, shown, rec.lr, rec.tokens, rec.seconds);
    if (every_eval > 0 && ((s + 1) % every_eval == 0 || s + 1 == total)) {
      const EvalRecord e = evaluate(s + 1);
      evals.push_back(e);
      eval_message(e);
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
    tokenizer::copy_tokenizer_files(rs.model.tokenizer, out.string());
  } else {
    write_model(out);
  }
  io::write_json_file((out / "run.json").string(), run_json(true));
  fs::remove_all(out / "checkpoint");
  return done_here;
}

// ---- the interface ------------------------------------------------------------------------------

Trainer::Trainer(Config config, TrainerOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->cfg = std::move(config);
  impl_->opts = std::move(options);
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
models::SequenceClassifier* Trainer::classifier() {
  return impl_->classifier.get();
}

}  // namespace lethe::trainers
