// The backward pass: topological order from the root, gradient accumulation per node, and
// freeing of saved tensors afterwards.
#include "engine/autograd.h"

#include <unordered_map>
#include <unordered_set>

#include "engine/device_backend.h"
#include "engine/ops.h"

namespace lethe {

namespace {
thread_local bool g_grad_mode = true;
}

bool grad_mode_enabled() {
  return g_grad_mode;
}
void set_grad_mode(bool enabled) {
  g_grad_mode = enabled;
}

bool any_requires_grad(std::initializer_list<const Tensor*> inputs) {
  if (!grad_mode_enabled()) return false;
  for (const Tensor* t : inputs)
    if (t && t->defined() && t->requires_grad()) return true;
  return false;
}

bool any_requires_grad(const std::vector<Tensor>& inputs) {
  if (!grad_mode_enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

// The node that receives an input's gradient: its grad_fn, or its leaf accumulator.
static std::shared_ptr<Node> gradient_edge(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return nullptr;
  if (t.grad_fn()) return t.grad_fn();
  AutogradMeta& meta = t.impl()->meta();
  std::shared_ptr<Node> acc = meta.grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(std::weak_ptr<TensorImpl>(t.impl_ptr()));
    acc->output_shape = t.shape();
    acc->output_dtype = t.dtype();
    meta.grad_accumulator = acc;
  }
  return acc;
}

static void finish_attach(Tensor& out, const std::shared_ptr<Node>& node) {
  node->output_shape = out.shape();
  node->output_dtype = out.dtype();
  out.set_grad_fn(node);
}

void attach_node(Tensor& out, const std::shared_ptr<Node>& node,
                 std::initializer_list<const Tensor*> inputs) {
  node->next.clear();
  for (const Tensor* t : inputs) node->next.push_back(t ? gradient_edge(*t) : nullptr);
  finish_attach(out, node);
}

void attach_node(Tensor& out, const std::shared_ptr<Node>& node,
                 const std::vector<Tensor>& inputs) {
  node->next.clear();
  for (const Tensor& t : inputs) node->next.push_back(gradient_edge(t));
  finish_attach(out, node);
}

void check_not_released(const Node& node) {
  LETHE_CHECK(!node.released, "backward through ", node.name(),
              " a second time: its saved tensors were freed by the first backward (pass "
              "retain_graph = true to the first backward to keep them)");
}

std::vector<Tensor> AccumulateGrad::apply(const Tensor& g) {
  std::shared_ptr<TensorImpl> leaf = leaf_.lock();
  if (!leaf) return {};
  Tensor t(leaf);
  Tensor existing = t.grad();
  NoGradGuard ng;
  Tensor gg = g.to(t.dtype());
  if (existing.defined()) {
    // In place, so a gradient that is a view into a flat buffer stays bound to it.
    backend(existing.device())
        .binary(kernels::BinaryOp::add, existing.dtype(), existing.data_ptr(), layout_of(existing),
                existing.data_ptr(), layout_of(existing), gg.contiguous().data_ptr(),
                layout_of(gg.contiguous()));
  } else {
    t.set_grad(gg.contiguous().same(g) ? g.clone() : gg.contiguous());
  }
  return {};
}

Tensor AccumulateGrad::existing_grad() const {
  std::shared_ptr<TensorImpl> leaf = leaf_.lock();
  if (!leaf) return Tensor();
  return Tensor(leaf).grad();
}

Tensor leaf_grad_sink(const Node& node, size_t i, const Shape& shape, DType dtype) {
  if (i >= node.next.size() || !node.next[i]) return Tensor();
  const auto* acc = dynamic_cast<const AccumulateGrad*>(node.next[i].get());
  if (!acc) return Tensor();
  Tensor g = acc->existing_grad();
  if (!g.defined() || g.shape() != shape || g.dtype() != dtype || !g.is_contiguous())
    return Tensor();
  return g;
}

void run_backward(const Tensor& root, const Tensor& seed_in, bool retain_graph) {
  LETHE_CHECK(root.defined(), "backward() on an undefined tensor");
  LETHE_CHECK(root.requires_grad(), "backward(): ", root.str(),
              " does not require grad and has no grad_fn (did you compute it under NoGradGuard, "
              "or from tensors without requires_grad?)");
  Tensor seed = seed_in;
  if (!seed.defined()) {
    LETHE_CHECK(root.numel() == 1, "backward(): ", root.str(),
                " is not a scalar; pass a seed gradient of the same shape");
    seed = Tensor::ones(root.shape(), root.dtype(), root.device());
  }
  LETHE_CHECK(seed.shape() == root.shape(), "backward(): seed ", seed.str(), " does not match ",
              root.str());

  NoGradGuard ng;  // backward formulas are not themselves recorded
  std::shared_ptr<Node> start;
  {
    // A leaf root: its own accumulator.
    start = root.grad_fn() ? root.grad_fn() : gradient_edge(root);
  }

  // Dependency counts over the reachable graph.
  std::unordered_map<Node*, int> deps;
  std::vector<Node*> stack{start.get()};
  std::unordered_set<Node*> seen{start.get()};
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const auto& nx : n->next) {
      if (!nx) continue;
      deps[nx.get()]++;
      if (seen.insert(nx.get()).second) stack.push_back(nx.get());
    }
  }

  std::unordered_map<Node*, Tensor> pending;
  pending[start.get()] = seed.to(start->output_dtype);
  std::vector<std::shared_ptr<Node>> ready{start};
  while (!ready.empty()) {
    std::shared_ptr<Node> node = ready.back();
    ready.pop_back();
    Tensor g = pending[node.get()];
    pending.erase(node.get());
    check_not_released(*node);
    LETHE_CHECK(g.shape() == node->output_shape, "internal: ", node->name(), " got gradient ",
                g.str(), " for output ", shape_str(node->output_shape));
    std::vector<Tensor> grads = node->apply(g);
    if (!retain_graph && !dynamic_cast<AccumulateGrad*>(node.get())) {
      node->release_saved();
      node->released = true;
    }
    for (size_t i = 0; i < node->next.size(); ++i) {
      const auto& nx = node->next[i];
      if (!nx) continue;
      if (i < grads.size() && grads[i].defined()) {
        auto it = pending.find(nx.get());
        if (it == pending.end()) {
          pending[nx.get()] = grads[i];
        } else {
          it->second = add(it->second, grads[i]);
        }
      }
      if (--deps[nx.get()] == 0) {
        if (pending.count(nx.get())) {
          ready.push_back(nx);
        } else {
          // No gradient flowed (all contributions undefined, or written straight into the leaf's
          // grad): a leaf with a grad already has it; anything else still gets zeros, so its
          // inputs' counts are released.
          const auto* acc = dynamic_cast<const AccumulateGrad*>(nx.get());
          if (acc && acc->existing_grad().defined()) continue;
          pending[nx.get()] = Tensor::zeros(nx->output_shape, nx->output_dtype, seed.device());
          ready.push_back(nx);
        }
      }
    }
  }
}

}  // namespace lethe
