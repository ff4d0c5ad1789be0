// ParameterStore: every weight of a module tree in one flat f32 buffer, each gradient set in one
// more, parameters as views into them. No optimizer math here (engine/optim.h) and no model code.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace lethe {

class Optimizer;

// Usage: declare every parameter with add(), then allocate(device) once. After allocate() the
// weights live in one buffer (trainable parameters first, then frozen ones; each parameter starts
// at a multiple of kParameterAlignment elements, gaps are zero) and gradient set 0 exists and is
// bound, so backward() accumulates straight into it.
//
// The Tensor handles add() returns stay valid across allocate(): allocate() moves their values into
// the flat buffer and re-points the same handles at it. (Views derived from a handle *before*
// allocate() keep pointing at the old, private memory.) Before allocate() each parameter has its
// own zero-filled memory, so peak memory during allocate() is twice the weights.
//
// Movable, not copyable; optimizers share the store's internals, so moving the store is safe.
class ParameterStore {
 public:
  static constexpr int64_t kParameterAlignment = 16;  // elements (64 bytes)

  ParameterStore();
  ~ParameterStore();
  ParameterStore(ParameterStore&&) noexcept;
  ParameterStore& operator=(ParameterStore&&) noexcept;
  ParameterStore(const ParameterStore&) = delete;
  ParameterStore& operator=(const ParameterStore&) = delete;

  // ---- declaring (before allocate) -------------------------------------------------------------
  // A new f32 parameter (zeros). Frozen parameters (trainable = false) get no gradient and are not
  // touched by optimizers (LoRA's base weights). Names are unique and non-empty.
  Tensor add(const std::string& name, const Shape& shape, bool trainable = true);
  void set_trainable(const std::string& name, bool trainable);
  // Creates the flat weight buffer and gradient set 0 on `device`, and binds set 0. Once only.
  void allocate(Device device = Device::cpu());
  bool allocated() const;

  // ---- parameters ------------------------------------------------------------------------------
  Tensor get(const std::string& name) const;  // throws naming the unknown parameter
  bool contains(const std::string& name) const;
  bool trainable(const std::string& name) const;
  const std::vector<std::string>& names() const;  // declaration order
  int64_t numel() const;                          // sum over all parameters
  int64_t trainable_numel() const;                // sum over trainable parameters
  Device device() const;

  // ---- flat buffers (after allocate) -----------------------------------------------------------
  // All weights, [flat_size()] including alignment gaps.
  Tensor flat_weights() const;
  // The leading part of flat_weights() that holds the trainable parameters: [flat_grad_size()].
  Tensor trainable_weights() const;
  int64_t flat_size() const;
  // Elements of one gradient set (and of an optimizer's state buffers, and of the direction
  // step_with takes): the trainable region with its gaps.
  int64_t flat_grad_size() const;
  // Offset of a parameter inside the flat weight buffer (and, if trainable, the gradient sets).
  int64_t offset(const std::string& name) const;

  // ---- gradient sets ---------------------------------------------------------------------------
  // A new zero-filled gradient set; returns its index (set 0 exists after allocate()).
  int add_grad_set();
  int num_grad_sets() const;
  // Points every trainable parameter's .grad at its view in `set`; backward then accumulates there.
  void bind_grads(int set);
  // Clears every parameter's .grad (backward then creates fresh, unbound gradients).
  void unbind_grads();
  int bound_grad_set() const;  // -1 when none
  Tensor flat_grad(int set) const;
  Tensor grad_view(int set, const std::string& name) const;  // that parameter's part of the set
  void zero_grads(int set);
  // Global L2 norm of a set (one reduction, double accumulation).
  double grad_norm(int set) const;
  // K x K dot products <set_i, set_j>, row-major, in one pass over the buffers (K <= 16).
  std::vector<double> gram(const std::vector<int>& sets) const;
  // The same over elements [begin, end) of the sets only (ZeRO-1: this rank's range).
  std::vector<double> gram(const std::vector<int>& sets, int64_t begin, int64_t end) const;
  // dst = Σₖ coeffs[k] · set sets[k]: the combination rules' one write. dst is an f32
  // [flat_grad_size()] buffer on the store's device, and may be one of the sets' own buffers.
  void combine(Tensor& dst, const std::vector<double>& coeffs, const std::vector<int>& sets) const;

  struct State;

 private:
  friend class Optimizer;
  explicit ParameterStore(std::shared_ptr<State> state);
  ParameterStore share() const;  // a second handle on the same store (for optimizers)
  State& state() const;
  std::shared_ptr<State> state_;
};

}  // namespace lethe
