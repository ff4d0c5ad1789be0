// ParameterStore: flat weight and gradient buffers with per-parameter views.
#include "engine/parameters.h"

#include <cmath>
#include <unordered_map>

#include "engine/autograd.h"
#include "engine/device_backend.h"

namespace lethe {

struct ParameterStore::State {
  struct Param {
    std::string name;
    Shape shape;
    int64_t numel = 0;
    bool trainable = true;
    int64_t offset = -1;  // in the flat buffers, set by allocate()
    Tensor handle;        // the tensor add() returned; re-pointed by allocate()
  };
  std::vector<Param> params;
  std::vector<std::string> names;
  std::unordered_map<std::string, size_t> index;
  bool allocated = false;
  Device device;
  int64_t numel = 0, trainable_numel = 0;
  int64_t flat_size = 0, grad_size = 0;
  Tensor weights;
  std::vector<Tensor> grad_sets;
  std::vector<std::vector<Tensor>> grad_views;  // [set][param]; undefined for frozen params
  int bound = -1;

  const Param& find(const std::string& name, const char* what) const {
    auto it = index.find(name);
    LETHE_CHECK(it != index.end(), "ParameterStore::", what, ": unknown parameter '", name, "' (",
                params.size(), " parameters declared)");
    return params[it->second];
  }
  void require_allocated(const char* what) const {
    LETHE_CHECK(allocated, "ParameterStore::", what, ": call allocate() first");
  }
  void check_set(int set, const char* what) const {
    require_allocated(what);
    LETHE_CHECK(set >= 0 && set < static_cast<int>(grad_sets.size()), "ParameterStore::", what,
                ": gradient set ", set, " does not exist (", grad_sets.size(), " sets)");
  }
};

namespace {
int64_t align_up(int64_t n) {
  const int64_t a = ParameterStore::kParameterAlignment;
  return (n + a - 1) / a * a;
}
}  // namespace

ParameterStore::ParameterStore() : state_(std::make_shared<State>()) {}
ParameterStore::ParameterStore(std::shared_ptr<State> state) : state_(std::move(state)) {}
ParameterStore::~ParameterStore() = default;
ParameterStore::ParameterStore(ParameterStore&&) noexcept = default;
ParameterStore& ParameterStore::operator=(ParameterStore&&) noexcept = default;

ParameterStore ParameterStore::share() const {
  return ParameterStore(state_);
}

ParameterStore::State& ParameterStore::state() const {
  LETHE_CHECK(state_ != nullptr, "use of a moved-from ParameterStore");
  return *state_;
}

Tensor ParameterStore::add(const std::string& name, const Shape& shape, bool trainable) {
  State& s = state();
  LETHE_CHECK(!s.allocated, "ParameterStore::add('", name,
              "') after allocate(): declare every parameter before allocating");
  LETHE_CHECK(!name.empty(), "ParameterStore::add: empty parameter name");
  LETHE_CHECK(!s.index.count(name), "ParameterStore::add: duplicate parameter name '", name, "'");
  for (int64_t d : shape) {
    LETHE_CHECK(d >= 0, "ParameterStore::add('", name, "'): negative dimension in shape ",
                shape_str(shape));
  }
  State::Param p;
  p.name = name;
  p.shape = shape;
  p.numel = shape_numel(shape);
  p.trainable = trainable;
  p.handle = Tensor::zeros(shape, DType::f32, Device::cpu());
  p.handle.set_requires_grad(trainable);
  s.index.emplace(name, s.params.size());
  s.names.push_back(name);
  LETHE_CHECK(!__builtin_add_overflow(s.numel, p.numel, &s.numel), "ParameterStore::add('", name,
              "'): the store's element count overflows");
  if (trainable) s.trainable_numel += p.numel;  // at most numel
  s.params.push_back(std::move(p));
  return s.params.back().handle;
}

void ParameterStore::set_trainable(const std::string& name, bool trainable) {
  State& s = state();
  s.find(name, "set_trainable");  // throws for an unknown name
  LETHE_CHECK(!s.allocated, "ParameterStore::set_trainable('", name,
              "') after allocate(): the flat layout puts trainable parameters first, so decide "
              "before allocating");
  State::Param& p = s.params[s.index.at(name)];
  if (p.trainable == trainable) return;
  s.trainable_numel += trainable ? p.numel : -p.numel;
  p.trainable = trainable;
  p.handle.set_requires_grad(trainable);
}

void ParameterStore::allocate(Device device) {
  State& s = state();
  LETHE_CHECK(!s.allocated, "ParameterStore::allocate: already allocated");
  LETHE_CHECK(!s.params.empty(), "ParameterStore::allocate: no parameters declared");
  // Layout: trainable parameters first (declaration order), then frozen ones, so an optimizer
  // step and every gradient set cover one contiguous range [0, grad_size).
  int64_t offset = 0;
  for (int pass = 0; pass < 2; ++pass) {
    const bool want_trainable = pass == 0;
    for (State::Param& p : s.params) {
      if (p.trainable != want_trainable) continue;
      p.offset = offset;
      offset = align_up(offset + p.numel);
    }
    if (want_trainable) s.grad_size = offset;
  }
  s.flat_size = offset;
  s.device = device;
  s.weights = Tensor::zeros({s.flat_size}, DType::f32, device);
  NoGradGuard ng;
  for (State::Param& p : s.params) {
    Shape strides = contiguous_strides(p.shape);
    Tensor dst = make_view(s.weights.storage(), p.offset, p.shape, strides, DType::f32);
    dst.copy_(p.handle);
    // Re-point the handle the caller holds (same TensorImpl) at the flat buffer.
    TensorImpl* impl = p.handle.impl();
    impl->storage = s.weights.storage();
    impl->offset = p.offset;
    impl->strides = strides;
  }
  s.allocated = true;
  // The per-parameter tensors of add() are freed now; their blocks (the model's size in all) would
  // sit in the CPU block cache, never reused by the flat buffers' sizes.
  kernels::cpu_release_cached_blocks();
  add_grad_set();
  bind_grads(0);
}

bool ParameterStore::allocated() const {
  return state().allocated;
}

Tensor ParameterStore::get(const std::string& name) const {
  return state().find(name, "get").handle;
}

bool ParameterStore::contains(const std::string& name) const {
  return state().index.count(name) > 0;
}

bool ParameterStore::trainable(const std::string& name) const {
  return state().find(name, "trainable").trainable;
}

const std::vector<std::string>& ParameterStore::names() const {
  return state().names;
}
int64_t ParameterStore::numel() const {
  return state().numel;
}
int64_t ParameterStore::trainable_numel() const {
  return state().trainable_numel;
}
Device ParameterStore::device() const {
  return state().device;
}

Tensor ParameterStore::flat_weights() const {
  state().require_allocated("flat_weights");
  return state().weights;
}

Tensor ParameterStore::trainable_weights() const {
  const State& s = state();
  s.require_allocated("trainable_weights");
  return make_view(s.weights.storage(), 0, {s.grad_size}, {1}, DType::f32);
}

int64_t ParameterStore::flat_size() const {
  state().require_allocated("flat_size");
  return state().flat_size;
}

int64_t ParameterStore::flat_grad_size() const {
  state().require_allocated("flat_grad_size");
  return state().grad_size;
}

int64_t ParameterStore::offset(const std::string& name) const {
  const State& s = state();
  s.require_allocated("offset");
  return s.find(name, "offset").offset;
}

int ParameterStore::add_grad_set() {
  State& s = state();
  s.require_allocated("add_grad_set");
  Tensor buf = Tensor::zeros({s.grad_size}, DType::f32, s.device);
  std::vector<Tensor> views;
  views.reserve(s.params.size());
  for (const State::Param& p : s.params) {
    views.push_back(p.trainable ? make_view(buf.storage(), p.offset, p.shape,
                                            contiguous_strides(p.shape), DType::f32)
                                : Tensor());
  }
  s.grad_sets.push_back(buf);
  s.grad_views.push_back(std::move(views));
  return static_cast<int>(s.grad_sets.size()) - 1;
}

int ParameterStore::num_grad_sets() const {
  return static_cast<int>(state().grad_sets.size());
}

void ParameterStore::bind_grads(int set) {
  State& s = state();
  s.check_set(set, "bind_grads");
  for (size_t i = 0; i < s.params.size(); ++i) {
    s.params[i].handle.set_grad(s.grad_views[static_cast<size_t>(set)][i]);
  }
  s.bound = set;
}

void ParameterStore::unbind_grads() {
  State& s = state();
  for (State::Param& p : s.params) p.handle.set_grad(Tensor());
  s.bound = -1;
}

int ParameterStore::bound_grad_set() const {
  return state().bound;
}

Tensor ParameterStore::flat_grad(int set) const {
  state().check_set(set, "flat_grad");
  return state().grad_sets[static_cast<size_t>(set)];
}

Tensor ParameterStore::grad_view(int set, const std::string& name) const {
  const State& s = state();
  s.check_set(set, "grad_view");
  s.find(name, "grad_view");
  const size_t i = s.index.at(name);
  LETHE_CHECK(s.params[i].trainable, "ParameterStore::grad_view: parameter '", name,
              "' is frozen and has no gradient");
  return s.grad_views[static_cast<size_t>(set)][i];
}

void ParameterStore::zero_grads(int set) {
  State& s = state();
  s.check_set(set, "zero_grads");
  NoGradGuard ng;
  s.grad_sets[static_cast<size_t>(set)].zero_();
}

double ParameterStore::grad_norm(int set) const {
  const State& s = state();
  s.check_set(set, "grad_norm");
  const Tensor& g = s.grad_sets[static_cast<size_t>(set)];
  if (s.grad_size == 0) return 0.0;
  double sq = backend(s.device).dot(DType::f32, s.grad_size, g.data_ptr(), g.data_ptr());
  return std::sqrt(sq);
}

std::vector<double> ParameterStore::gram(const std::vector<int>& sets) const {
  return gram(sets, 0, state().grad_size);
}

std::vector<double> ParameterStore::gram(const std::vector<int>& sets, int64_t begin,
                                         int64_t end) const {
  const State& s = state();
  LETHE_CHECK(0 <= begin && begin <= end && end <= s.grad_size, "ParameterStore::gram: range [",
              begin, ", ", end, ") outside the ", s.grad_size, " gradient elements");
  const int k = static_cast<int>(sets.size());
  LETHE_CHECK(k >= 1 && k <= 16, "ParameterStore::gram: ", k, " gradient sets given (1 to 16)");
  std::vector<const void*> bufs;
  for (int set : sets) {
    s.check_set(set, "gram");
    bufs.push_back(static_cast<const float*>(s.grad_sets[static_cast<size_t>(set)].data_ptr()) +
                   begin);
  }
  std::vector<double> out(static_cast<size_t>(k) * static_cast<size_t>(k), 0.0);
  if (end > begin) backend(s.device).gram(DType::f32, end - begin, k, bufs.data(), out.data());
  return out;
}

void ParameterStore::combine(Tensor& dst, const std::vector<double>& coeffs,
                             const std::vector<int>& sets) const {
  const State& s = state();
  s.require_allocated("combine");
  LETHE_CHECK(coeffs.size() == sets.size() && !sets.empty(),
              "ParameterStore::combine: ", coeffs.size(), " coefficients for ", sets.size(),
              " gradient sets");
  LETHE_CHECK(dst.defined() && dst.dtype() == DType::f32 && dst.is_contiguous() &&
                  dst.numel() == s.grad_size && dst.device() == s.device,
              "ParameterStore::combine: the destination must be a contiguous f32 [", s.grad_size,
              "] buffer on ", s.device.str(), ", got ",
              dst.defined() ? dst.str() : std::string("an undefined tensor"));
  for (size_t k = 0; k < sets.size(); ++k) {
    s.check_set(sets[k], "combine");
    LETHE_CHECK(std::isfinite(coeffs[k]), "ParameterStore::combine: coefficient ", k,
                " of gradient set ", sets[k], " is ", coeffs[k]);
  }
  if (s.grad_size == 0) return;
  kernels::Backend& be = backend(s.device);
  void* y = dst.data_ptr();
  // A set that is dst itself is scaled in place first; then the others are added to it.
  size_t first = sets.size();
  for (size_t k = 0; k < sets.size(); ++k)
    if (s.grad_sets[static_cast<size_t>(sets[k])].data_ptr() == y) first = k;
  if (first < sets.size()) {
    if (coeffs[first] != 1.0)
      be.axpby(DType::f32, s.grad_size, coeffs[first], y, 0.0, y);  // y = c·y
  } else {
    first = 0;
    be.axpby(DType::f32, s.grad_size, coeffs[0],
             s.grad_sets[static_cast<size_t>(sets[0])].data_ptr(), 0.0, y);
  }
  for (size_t k = 0; k < sets.size(); ++k) {
    if (k == first) continue;
    const void* x = s.grad_sets[static_cast<size_t>(sets[k])].data_ptr();
    LETHE_CHECK(x != y, "ParameterStore::combine: gradient set ", sets[k],
                " is listed twice as the destination");
    be.axpby(DType::f32, s.grad_size, coeffs[k], x, 1.0, y);
  }
}

}  // namespace lethe
