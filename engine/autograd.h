// Reverse-mode autograd: graph nodes, the backward pass, grad mode and NoGradGuard.
// Each differentiable op defines one Node subclass with a hand-written backward; no kernels here.
#pragma once

#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace lethe {

// Whether ops record the graph (thread-local; on by default).
bool grad_mode_enabled();
void set_grad_mode(bool enabled);

class NoGradGuard {
 public:
  NoGradGuard() : prev_(grad_mode_enabled()) { set_grad_mode(false); }
  ~NoGradGuard() { set_grad_mode(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// One node of the graph: it receives the gradient of its op's output and returns one gradient per
// input (an undefined Tensor where that input needs none).
class Node {
 public:
  virtual ~Node() = default;
  virtual const char* name() const = 0;
  virtual std::vector<Tensor> apply(const Tensor& grad_output) = 0;
  // Drops saved tensors after backward (unless retain_graph). Subclasses clear their members.
  virtual void release_saved() {}

  // Where each input's gradient goes: its grad_fn, its leaf accumulator, or null.
  std::vector<std::shared_ptr<Node>> next;
  // The output's shape and dtype, to check and to build seeds.
  Shape output_shape;
  DType output_dtype = DType::f32;
  bool released = false;
};

// Accumulates into a leaf's .grad (in place when a grad exists, so flat-buffer views stay bound).
class AccumulateGrad : public Node {
 public:
  explicit AccumulateGrad(std::weak_ptr<TensorImpl> leaf) : leaf_(std::move(leaf)) {}
  const char* name() const override { return "AccumulateGrad"; }
  std::vector<Tensor> apply(const Tensor& grad_output) override;
  // The leaf's existing .grad (undefined when it has none or the leaf is gone).
  Tensor existing_grad() const;

 private:
  std::weak_ptr<TensorImpl> leaf_;
};

// True when grad mode is on and any of the tensors requires grad.
bool any_requires_grad(std::initializer_list<const Tensor*> inputs);
bool any_requires_grad(const std::vector<Tensor>& inputs);

// Connects `node` to the inputs and makes it out's grad_fn (call only when any_requires_grad).
void attach_node(Tensor& out, const std::shared_ptr<Node>& node,
                 std::initializer_list<const Tensor*> inputs);
void attach_node(Tensor& out, const std::shared_ptr<Node>& node, const std::vector<Tensor>& inputs);

// The backward pass (Tensor::backward calls this).
void run_backward(const Tensor& root, const Tensor& seed, bool retain_graph);

// Where input `i` of `node` may accumulate its gradient directly: when that input is a leaf whose
// .grad already exists (e.g. a view bound into a flat gradient set) with this shape and dtype and
// contiguous, that grad; else undefined. A backward that adds its contribution into it (a GEMM
// with β = 1, a scatter-add) returns an undefined gradient for the input instead: no temporary
// of the parameter's size, no second pass to add it.
Tensor leaf_grad_sink(const Node& node, size_t i, const Shape& shape, DType dtype);

// Throws a clear error if a node's saved tensors were freed by an earlier backward.
void check_not_released(const Node& node);

}  // namespace lethe
