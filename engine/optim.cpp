// AdamW, SGD and gradient clipping on flat buffers (the math is in the backends' kernels).
#include "engine/optim.h"

#include <algorithm>
#include <cmath>

#include "engine/autograd.h"
#include "engine/device_backend.h"

namespace lethe {

namespace {

void check_lr(const char* who, double lr) {
  LETHE_CHECK(std::isfinite(lr) && lr >= 0.0, who, ": invalid learning rate ", lr,
              " (must be finite and >= 0)");
}

void check_flat(const char* who, const Tensor& t, int64_t size, Device device) {
  LETHE_CHECK(t.defined(), who, ": undefined gradient tensor");
  LETHE_CHECK(t.dtype() == DType::f32, who, ": gradient ", t.str(),
              " must be f32 (parameters, gradients and optimizer state are f32)");
  LETHE_CHECK(t.device() == device, who, ": gradient ", t.str(),
              " is not on the parameters' device ", device.str());
  LETHE_CHECK(t.numel() == size, who, ": flat gradient ", t.str(), " has ", t.numel(),
              " elements but the trainable parameters need ", size,
              " (ParameterStore::flat_grad_size())");
  LETHE_CHECK(t.is_contiguous(), who, ": flat gradient ", t.str(), " must be contiguous");
}

}  // namespace

// ---- Optimizer --------------------------------------------------------------------------------

Optimizer::Optimizer(ParameterStore& store, double lr) : store_(store.share()), lr_(lr) {
  LETHE_CHECK(store_.allocated(),
              "optimizer: the ParameterStore is not allocated (call "
              "allocate() before creating an optimizer)");
  LETHE_CHECK(store_.trainable_numel() > 0,
              "optimizer: the ParameterStore has no trainable parameters");
  weights_ = store_.trainable_weights();
  decay_runs_ = {{0, store_.flat_grad_size(), true}};
  shard_end_ = store_.flat_grad_size();
}

void Optimizer::shard(int64_t begin, int64_t end) {
  LETHE_CHECK(0 <= begin && begin <= end && end <= store_.flat_grad_size(), name(), ": shard [",
              begin, ", ", end, ") outside the trainable region of ", store_.flat_grad_size(),
              " elements");
  LETHE_CHECK(step_count_ == 0, name(), ": shard() after ", step_count_, " steps");
  shard_begin_ = begin;
  shard_end_ = end;
  reset_state();
}

std::vector<DecayRunView> Optimizer::shard_runs() const {
  std::vector<DecayRunView> out;
  for (const DecayRun& r : decay_runs_) {
    const int64_t b = std::max(r.begin, shard_begin_), e = std::min(r.end, shard_end_);
    if (e > b) out.push_back({b, e, r.decay});
  }
  return out;
}

void Optimizer::set_no_decay(const std::function<bool(const std::string&)>& no_decay) {
  // Trainable parameters sorted by offset; each alignment gap joins the run before it.
  std::vector<std::pair<int64_t, bool>> starts;
  for (const std::string& n : store_.names()) {
    if (!store_.trainable(n)) continue;
    starts.emplace_back(store_.offset(n), !(no_decay && no_decay(n)));
  }
  std::sort(starts.begin(), starts.end());
  decay_runs_.clear();
  for (const auto& [begin, decay] : starts) {
    if (!decay_runs_.empty() && decay_runs_.back().decay == decay) continue;
    if (!decay_runs_.empty()) decay_runs_.back().end = begin;
    decay_runs_.push_back({begin, 0, decay});
  }
  if (decay_runs_.empty()) decay_runs_.push_back({0, 0, true});
  decay_runs_.front().begin = 0;
  decay_runs_.back().end = store_.flat_grad_size();
}

Tensor Optimizer::preview_update(const Tensor& flat_grad) {
  NoGradGuard ng;
  const Tensor before = weights_.clone();
  std::vector<Tensor> saved;
  for (const auto& [name, buf] : state_buffers()) saved.push_back(buf.clone());
  const double lr = lr_;
  const int64_t steps = step_count_;
  lr_ = 1.0;
  try {
    step_with(flat_grad);
  } catch (...) {
    lr_ = lr;
    step_count_ = steps;
    throw;
  }
  Tensor u = Tensor::empty(before.shape(), DType::f32, before.device());
  u.copy_(before);
  kernels::Backend& be = backend(store_.device());
  // u = before − after
  if (u.numel()) be.axpby(DType::f32, u.numel(), -1.0, weights_.data_ptr(), 1.0, u.data_ptr());
  weights_.copy_(before);
  size_t i = 0;
  for (const auto& [name, buf] : state_buffers()) {
    Tensor live = buf;
    live.copy_(saved[i++]);
  }
  lr_ = lr;
  step_count_ = steps;
  return u;
}

Optimizer::~Optimizer() = default;

void Optimizer::set_lr(double lr) {
  check_lr(name(), lr);
  lr_ = lr;
}

void Optimizer::set_step_count(int64_t steps) {
  LETHE_CHECK(steps >= 0, name(), ": negative step count ", steps);
  step_count_ = steps;
}

Tensor Optimizer::new_state_buffer() const {
  return Tensor::zeros({shard_end_ - shard_begin_}, DType::f32, store_.device());
}

void Optimizer::step() {
  const int set = store_.bound_grad_set();
  LETHE_CHECK(set >= 0, name(),
              ".step(): no gradient set is bound to the parameters (call "
              "ParameterStore::bind_grads(set), or pass a direction to step_with())");
  step_with(store_.flat_grad(set));
}

void Optimizer::step_with(const Tensor& flat_grad) {
  std::string who = std::string(name()) + ".step_with";
  check_flat(who.c_str(), flat_grad, store_.flat_grad_size(), store_.device());
  ++step_count_;
  NoGradGuard ng;
  apply(flat_grad);
}

void Optimizer::zero_grad() {
  const int set = store_.bound_grad_set();
  if (set >= 0) store_.zero_grads(set);
}

// ---- AdamW ------------------------------------------------------------------------------------

AdamW::AdamW(ParameterStore& store, const AdamWOptions& o) : Optimizer(store, o.lr), options_(o) {
  check_lr("AdamW", o.lr);
  LETHE_CHECK(o.beta1 >= 0.0 && o.beta1 < 1.0, "AdamW: invalid beta1 ", o.beta1,
              " (must be in [0, 1))");
  LETHE_CHECK(o.beta2 >= 0.0 && o.beta2 < 1.0, "AdamW: invalid beta2 ", o.beta2,
              " (must be in [0, 1))");
  LETHE_CHECK(std::isfinite(o.eps) && o.eps > 0.0, "AdamW: invalid eps ", o.eps,
              " (must be finite and > 0)");
  LETHE_CHECK(std::isfinite(o.weight_decay) && o.weight_decay >= 0.0,
              "AdamW: invalid weight_decay ", o.weight_decay, " (must be finite and >= 0)");
  reset_state();
}

void AdamW::reset_state() {
  exp_avg_ = new_state_buffer();
  exp_avg_sq_ = new_state_buffer();
}

void AdamW::apply(const Tensor& g) {
  const double t = static_cast<double>(step_count());
  const double bc1 = 1.0 - std::pow(options_.beta1, t);
  const double bc2 = 1.0 - std::pow(options_.beta2, t);
  kernels::Backend& be = backend(store_.device());
  for (const DecayRunView& r : shard_runs()) {
    const int64_t s = r.begin - shard_begin_;  // offset in the state buffers
    be.adamw_step(r.end - r.begin, weights_.data<float>() + r.begin, g.data<float>() + r.begin,
                  exp_avg_.data<float>() + s, exp_avg_sq_.data<float>() + s, lr(), options_.beta1,
                  options_.beta2, options_.eps, r.decay ? options_.weight_decay : 0.0, bc1, bc2);
  }
}

std::vector<std::pair<std::string, Tensor>> AdamW::state_buffers() const {
  return {{"exp_avg", exp_avg_}, {"exp_avg_sq", exp_avg_sq_}};
}

// ---- SGD --------------------------------------------------------------------------------------

SGD::SGD(ParameterStore& store, const SgdOptions& o) : Optimizer(store, o.lr), options_(o) {
  check_lr("SGD", o.lr);
  LETHE_CHECK(std::isfinite(o.momentum) && o.momentum >= 0.0, "SGD: invalid momentum ", o.momentum,
              " (must be finite and >= 0)");
  LETHE_CHECK(std::isfinite(o.dampening), "SGD: invalid dampening ", o.dampening);
  LETHE_CHECK(std::isfinite(o.weight_decay) && o.weight_decay >= 0.0, "SGD: invalid weight_decay ",
              o.weight_decay, " (must be finite and >= 0)");
  LETHE_CHECK(!o.nesterov || (o.momentum > 0.0 && o.dampening == 0.0),
              "SGD: nesterov momentum requires momentum > 0 and dampening 0 (got momentum ",
              o.momentum, ", dampening ", o.dampening, ")");
  reset_state();
}

void SGD::reset_state() {
  momentum_buffer_ = options_.momentum != 0.0 ? new_state_buffer() : Tensor();
}

void SGD::apply(const Tensor& g) {
  float* buf = momentum_buffer_.defined() ? momentum_buffer_.data<float>() : nullptr;
  kernels::Backend& be = backend(store_.device());
  for (const DecayRunView& r : shard_runs()) {
    be.sgd_step(r.end - r.begin, weights_.data<float>() + r.begin, g.data<float>() + r.begin,
                buf ? buf + (r.begin - shard_begin_) : nullptr, lr(), options_.momentum,
                options_.dampening, r.decay ? options_.weight_decay : 0.0, options_.nesterov,
                step_count() == 1);
  }
}

std::vector<std::pair<std::string, Tensor>> SGD::state_buffers() const {
  if (!momentum_buffer_.defined()) return {};
  return {{"momentum_buffer", momentum_buffer_}};
}

// ---- clipping ---------------------------------------------------------------------------------

double clip_grad_norm(Tensor& flat, double max_norm) {
  LETHE_CHECK(!std::isnan(max_norm), "clip_grad_norm: max_norm is NaN");
  LETHE_CHECK(flat.defined() && flat.dtype() == DType::f32 && flat.is_contiguous(),
              "clip_grad_norm: expected a contiguous f32 buffer, got ",
              flat.defined() ? flat.str() : std::string("an undefined tensor"));
  const int64_t n = flat.numel();
  if (n == 0) return 0.0;
  kernels::Backend& be = backend(flat.device());
  const double norm = std::sqrt(be.dot(DType::f32, n, flat.data_ptr(), flat.data_ptr()));
  if (max_norm > 0.0) {
    const double coef = max_norm / (norm + 1e-6);
    // torch multiplies by min(coef, 1); multiplying by 1 changes nothing, so skip it.
    if (coef < 1.0) be.axpby(DType::f32, n, coef, flat.data_ptr(), 0.0, flat.data_ptr());
  }
  return norm;
}

double clip_grad_norm(ParameterStore& store, int set, double max_norm) {
  Tensor flat = store.flat_grad(set);
  return clip_grad_norm(flat, max_norm);
}

}  // namespace lethe
