// Optimizers (AdamW, SGD with torch.optim semantics) and global gradient clipping over a
// ParameterStore's flat buffers: one kernel call per step. No schedules here (lr_schedule.h).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "engine/parameters.h"
#include "engine/tensor.h"

namespace lethe {

// A contiguous run of the trainable region and whether weight decay applies to it.
struct DecayRunView {
  int64_t begin, end;
  bool decay;
};

// Base class: owns flat state buffers the size of the store's trainable region. The store's
// trainable parameters are updated in place; frozen ones are never touched.
class Optimizer {
 public:
  virtual ~Optimizer();
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  virtual const char* name() const = 0;

  // One update from the gradient set currently bound to the parameters (store.bind_grads).
  void step();
  // One update from an explicit flat direction of store.flat_grad_size() f32 elements on the
  // store's device (e.g. a combination of several gradient sets written by a multi-objective rule).
  void step_with(const Tensor& flat_grad);
  // Zeroes the bound gradient set (nothing when none is bound).
  void zero_grad();

  double lr() const { return lr_; }
  void set_lr(double lr);  // e.g. from an LrSchedule before each step; lr >= 0
  // Steps taken so far (AdamW's bias correction uses it); settable when resuming from a checkpoint.
  int64_t step_count() const { return step_count_; }
  void set_step_count(int64_t steps);
  // The flat state buffers by name (live tensors: copy_ into them to restore a checkpoint).
  virtual std::vector<std::pair<std::string, Tensor>> state_buffers() const = 0;

  // Weight-decay groups (HF Trainer: no decay on biases and LayerNorm weights): parameters for
  // which no_decay(name) is true are updated with weight_decay 0. Default: every one decays.
  void set_no_decay(const std::function<bool(const std::string&)>& no_decay);

  // The update the next step would make at learning rate 1 for `flat_grad` (θ_new = θ − lr·u for
  // every optimizer here): computed by a step that is then undone, so weights, state buffers and
  // step_count() are exactly as before. GeN's probes use it.
  Tensor preview_update(const Tensor& flat_grad);

  // ZeRO-1: this optimizer updates only [begin, end) of the trainable region and keeps state
  // buffers of that size (each rank of a data-parallel run owns one range; the weights are then
  // gathered by the caller). Call before the first step. Default: the whole region.
  void shard(int64_t begin, int64_t end);
  int64_t shard_begin() const { return shard_begin_; }
  int64_t shard_end() const { return shard_end_; }

 protected:
  Optimizer(ParameterStore& store, double lr);
  // Applies the update for step number step_count() (already incremented, so >= 1).
  virtual void apply(const Tensor& flat_grad) = 0;
  Tensor new_state_buffer() const;  // zeros, [shard_end − shard_begin], on the store's device
  // Reallocates the state buffers (after shard()).
  virtual void reset_state() = 0;
  // The decay runs clipped to the shard: [begin, end) in the trainable region's coordinates.
  std::vector<DecayRunView> shard_runs() const;
  ParameterStore store_;  // shares the caller's store
  Tensor weights_;        // the trainable region of the flat weight buffer
  // Contiguous runs [begin, end) of the trainable region and whether weight decay applies.
  struct DecayRun {
    int64_t begin, end;
    bool decay;
  };
  std::vector<DecayRun> decay_runs_;
  int64_t shard_begin_ = 0, shard_end_ = 0;

 private:
  double lr_ = 0;
  int64_t step_count_ = 0;
};

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;  // decoupled: p -= lr * wd * p before the Adam update
};

// torch.optim.AdamW (amsgrad = False, maximize = False) with bias correction.
class AdamW final : public Optimizer {
 public:
  AdamW(ParameterStore& store, const AdamWOptions& options = {});
  const char* name() const override { return "AdamW"; }
  const AdamWOptions& options() const { return options_; }
  std::vector<std::pair<std::string, Tensor>> state_buffers() const override;

 private:
  void apply(const Tensor& flat_grad) override;
  void reset_state() override;
  AdamWOptions options_;
  Tensor exp_avg_, exp_avg_sq_;
};

struct SgdOptions {
  double lr = 1e-3;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;  // coupled (L2): g += wd * p
  bool nesterov = false;      // needs momentum > 0 and dampening 0
};

// torch.optim.SGD (maximize = False): the first step sets the momentum buffer to the gradient.
class SGD final : public Optimizer {
 public:
  SGD(ParameterStore& store, const SgdOptions& options);
  const char* name() const override { return "SGD"; }
  const SgdOptions& options() const { return options_; }
  std::vector<std::pair<std::string, Tensor>> state_buffers() const override;

 private:
  void apply(const Tensor& flat_grad) override;
  void reset_state() override;
  SgdOptions options_;
  Tensor momentum_buffer_;  // undefined when momentum == 0
};

// torch.nn.utils.clip_grad_norm_ over one gradient set: returns the global L2 norm before
// clipping and, when max_norm > 0 and the norm exceeds it, scales the set in place by
// max_norm / (norm + 1e-6). max_norm <= 0 only measures.
double clip_grad_norm(ParameterStore& store, int set, double max_norm);
// The same for any flat f32 buffer (e.g. a combined update direction).
double clip_grad_norm(Tensor& flat, double max_norm);

}  // namespace lethe
