// Tensor handles, storage, views and copies. Differentiable views record small autograd nodes.
#include "engine/tensor.h"

#include <algorithm>
#include <numeric>
#include <sstream>

#include "engine/autograd.h"
#include "engine/device_backend.h"
#include "engine/ops.h"
#include "engine/ops/common.h"

namespace lethe {

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    LETHE_CHECK(d >= 0, "negative dimension in shape ", shape_str(s));
    LETHE_CHECK(!__builtin_mul_overflow(n, d, &n), "shape ", shape_str(s),
                " has more elements than a 64-bit count can hold");
  }
  return n;
}

// numel × dtype size in bytes, refusing a product that does not fit (a corrupt or hostile size
// must not wrap around into a small allocation).
static size_t checked_bytes(const Shape& shape, DType dtype, const char* what) {
  size_t bytes = 0;
  LETHE_CHECK(
      !__builtin_mul_overflow(static_cast<size_t>(shape_numel(shape)), dtype_size(dtype), &bytes),
      what, ": shape ", shape_str(shape), " needs more bytes than can be addressed");
  return bytes;
}

Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (int i = static_cast<int>(s.size()) - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= std::max<int64_t>(s[i], 1);
  }
  return st;
}

std::string Device::str() const {
  if (type == DeviceKind::cpu) return "cpu";
  return index == 0 ? "cuda" : "cuda:" + std::to_string(index);
}

Device Device::parse(const std::string& s) {
  if (s == "cpu") return cpu();
  if (s == "cuda") return cuda(0);
  if (s.rfind("cuda:", 0) == 0) {
    try {
      return cuda(std::stoi(s.substr(5)));
    } catch (const std::exception&) {
    }
  }
  LETHE_FAIL("unknown device '", s, "' (expected cpu, cuda or cuda:N)");
}

kernels::Backend& backend(Device d) {
  if (d.is_cpu()) return kernels::cpu_backend();
  kernels::Backend* b = kernels::cuda_backend(d.index);
  LETHE_CHECK(b != nullptr, "device ", d.str(),
              " is not available: ", kernels::cuda_unavailable_reason(d.index));
  return *b;
}

void synchronize(Device d) {
  backend(d).synchronize();
}

// ---- Storage -----------------------------------------------------------------------------------

Storage::Storage(size_t bytes, Device device) : bytes_(bytes), device_(device) {
  data_ = bytes ? backend(device).allocate(bytes) : nullptr;
}

Storage::Storage(void* borrowed, size_t bytes, Device device, std::shared_ptr<const void> keepalive)
    : data_(borrowed), bytes_(bytes), device_(device), keepalive_(std::move(keepalive)) {}

Storage::~Storage() {
  if (!keepalive_ && data_) backend(device_).deallocate(data_, bytes_);
}

// ---- construction ------------------------------------------------------------------------------

Tensor make_view(const std::shared_ptr<Storage>& storage, int64_t offset, const Shape& shape,
                 const Shape& strides, DType dtype) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = storage;
  impl->offset = offset;
  impl->shape = shape;
  impl->strides = strides;
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

static void check_shape(const Shape& shape, const char* what) {
  for (int64_t d : shape)
    LETHE_CHECK(d >= 0, what, ": negative dimension in shape ", shape_str(shape));
  LETHE_CHECK(shape.size() <= static_cast<size_t>(kernels::kMaxDims), what, ": shape ",
              shape_str(shape), " has more than ", kernels::kMaxDims, " dims");
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  check_shape(shape, "Tensor::empty");
  const size_t bytes = checked_bytes(shape, dtype, "Tensor::empty");
  auto storage = std::make_shared<Storage>(bytes, device);
  return make_view(storage, 0, shape, contiguous_strides(shape), dtype);
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  if (t.numel()) backend(device).fill(dtype, t.data_ptr(), t.numel(), value);
  return t;
}
Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  return full(shape, 0.0, dtype, device);
}
Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) {
  return full(shape, 1.0, dtype, device);
}
Tensor Tensor::scalar(double value, DType dtype, Device device) {
  return full({}, value, dtype, device);
}

namespace {

enum class Distribution { normal, uniform };

// Refuses a random fill the generator cannot make, naming op: a dtype that is not floating, a
// negative (or nan) standard deviation, or low > high.
void check_random(const char* op, DType dtype, Distribution dist, double a, double b) {
  LETHE_CHECK(is_floating(dtype), op, ": dtype ", dtype_name(dtype), " is not floating");
  if (dist == Distribution::normal) {
    LETHE_CHECK(b >= 0, op, ": stddev must be >= 0, got ", b);
  } else {
    LETHE_CHECK(a <= b, op, ": low ", a, " > high ", b);
  }
}

// Writes counter-based random values over t: normal(mean a, stddev b) or uniform[a, b). Element i
// in logical order gets the value of (seed, offset + i) whatever t's strides; a strided t is filled
// through a dense temporary of its shape.
void fill_random(Tensor& t, Distribution dist, uint64_t seed, uint64_t offset, double a, double b) {
  if (t.numel() == 0) return;
  kernels::Backend& be = backend(t.device());
  Tensor dense = t.is_contiguous() ? t : Tensor::empty(t.shape(), t.dtype(), t.device());
  if (dist == Distribution::normal) {
    be.fill_normal(t.dtype(), dense.data_ptr(), t.numel(), seed, offset, a, b);
  } else {
    be.fill_uniform(t.dtype(), dense.data_ptr(), t.numel(), seed, offset, a, b);
  }
  if (!dense.same(t))
    be.copy_strided(t.dtype(), t.data_ptr(), layout_of(t), dense.data_ptr(), layout_of(dense));
}

}  // namespace

Tensor Tensor::randn(const Shape& shape, uint64_t seed, double mean, double stddev, DType dtype,
                     Device device, uint64_t offset) {
  check_random("Tensor::randn", dtype, Distribution::normal, mean, stddev);
  Tensor t = empty(shape, dtype, device);
  fill_random(t, Distribution::normal, seed, offset, mean, stddev);
  return t;
}

Tensor Tensor::rand(const Shape& shape, uint64_t seed, double low, double high, DType dtype,
                    Device device, uint64_t offset) {
  check_random("Tensor::rand", dtype, Distribution::uniform, low, high);
  Tensor t = empty(shape, dtype, device);
  fill_random(t, Distribution::uniform, seed, offset, low, high);
  return t;
}

template <typename Src>
static Tensor from_host(const std::vector<Src>& values, const Shape& shape, DType src_dtype,
                        DType dtype, Device device) {
  check_shape(shape, "Tensor::from_vector");
  LETHE_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape),
              "Tensor::from_vector: ", values.size(), " values for shape ", shape_str(shape), " (",
              shape_numel(shape), " elements)");
  Tensor host = Tensor::empty(shape, src_dtype, Device::cpu());
  std::copy(values.begin(), values.end(), host.data<Src>());
  if (src_dtype != dtype) host = host.to(dtype);
  return device.is_cpu() ? host : host.to(device);
}

Tensor Tensor::from_vector(const std::vector<double>& v, const Shape& s, DType dt, Device d) {
  return from_host(v, s, DType::f64, dt, d);
}
Tensor Tensor::from_vector(const std::vector<float>& v, const Shape& s, DType dt, Device d) {
  return from_host(v, s, DType::f32, dt, d);
}
Tensor Tensor::from_vector(const std::vector<int64_t>& v, const Shape& s, DType dt, Device d) {
  return from_host(v, s, DType::i64, dt, d);
}

Tensor Tensor::from_borrowed(void* data, const Shape& shape, DType dtype,
                             std::shared_ptr<const void> keepalive, Device device) {
  check_shape(shape, "Tensor::from_borrowed");
  const size_t bytes = checked_bytes(shape, dtype, "Tensor::from_borrowed");
  auto storage = std::make_shared<Storage>(data, bytes, device, std::move(keepalive));
  return make_view(storage, 0, shape, contiguous_strides(shape), dtype);
}

// ---- metadata ----------------------------------------------------------------------------------

static const TensorImpl& checked(const std::shared_ptr<TensorImpl>& impl) {
  LETHE_CHECK(impl != nullptr, "use of an undefined Tensor");
  return *impl;
}

const Shape& Tensor::shape() const {
  return checked(impl_).shape;
}
const Shape& Tensor::strides() const {
  return checked(impl_).strides;
}
int64_t Tensor::numel() const {
  return shape_numel(shape());
}
DType Tensor::dtype() const {
  return checked(impl_).dtype;
}
Device Tensor::device() const {
  return checked(impl_).storage->device();
}
int64_t Tensor::storage_offset() const {
  return checked(impl_).offset;
}
const std::shared_ptr<Storage>& Tensor::storage() const {
  return checked(impl_).storage;
}

int64_t Tensor::size(int d) const {
  int n = dim();
  if (d < 0) d += n;
  LETHE_CHECK(d >= 0 && d < n, "size(", d, ") out of range for ", str());
  return shape()[d];
}

void* Tensor::data_ptr() const {
  const TensorImpl& t = checked(impl_);
  return static_cast<char*>(t.storage->data()) +
         t.offset * static_cast<int64_t>(dtype_size(t.dtype));
}

bool Tensor::is_contiguous() const {
  const TensorImpl& t = checked(impl_);
  int64_t expected = 1;
  for (int i = static_cast<int>(t.shape.size()) - 1; i >= 0; --i) {
    if (t.shape[i] == 1) continue;
    if (t.strides[i] != expected) return false;
    expected *= t.shape[i];
  }
  return true;
}

std::string Tensor::str() const {
  if (!impl_) return "undefined";
  return std::string(dtype_name(dtype())) + shape_str(shape()) + " " + device().str();
}

kernels::Layout layout_of(const Tensor& t) {
  kernels::Layout l;
  l.ndim = t.dim();
  for (int d = 0; d < l.ndim; ++d) {
    l.shape[d] = t.shape()[d];
    l.stride[d] = t.strides()[d];
  }
  return l;
}

// ---- view ops (each a differentiable node) -----------------------------------------------------

namespace {

int wrap_dim(int d, int n, const char* op) {
  int w = d < 0 ? d + n : d;
  LETHE_CHECK(w >= 0 && w < std::max(n, 1), op, ": dim ", d, " out of range for ", n, "-d tensor");
  return w;
}

// Backward of reshape/view: reshape the gradient back to the input's shape.
struct ReshapeBackward : Node {
  Shape in_shape;
  const char* name() const override { return "ReshapeBackward"; }
  std::vector<Tensor> apply(const Tensor& g) override { return {g.reshape(in_shape)}; }
};

struct PermuteBackward : Node {
  std::vector<int> inverse;
  const char* name() const override { return "PermuteBackward"; }
  std::vector<Tensor> apply(const Tensor& g) override { return {g.permute(inverse)}; }
};

// Backward of slice: scatter the gradient into zeros of the input's shape.
struct SliceBackward : Node {
  Shape in_shape;
  int dim = 0;
  int64_t start = 0, end = 0, step = 1;
  const char* name() const override { return "SliceBackward"; }
  std::vector<Tensor> apply(const Tensor& g) override {
    Tensor out = Tensor::zeros(in_shape, g.dtype(), g.device());
    NoGradGuard ng;
    out.slice(dim, start, end, step).copy_(g);
    return {out};
  }
};

struct ExpandBackward : Node {
  Shape in_shape;
  const char* name() const override { return "ExpandBackward"; }
  std::vector<Tensor> apply(const Tensor& g) override { return {sum_to_shape(g, in_shape)}; }
};

struct CopyBackward : Node {  // contiguous/clone: identity
  const char* name() const override { return "CopyBackward"; }
  std::vector<Tensor> apply(const Tensor& g) override { return {g}; }
};

struct CastBackward : Node {
  DType in_dtype = DType::f32;
  const char* name() const override { return "CastBackward"; }
  std::vector<Tensor> apply(const Tensor& g) override { return {g.to(in_dtype)}; }
};

struct DeviceBackward : Node {
  Device in_device;
  const char* name() const override { return "DeviceBackward"; }
  std::vector<Tensor> apply(const Tensor& g) override { return {g.to(in_device)}; }
};

template <typename N>
Tensor record(Tensor out, const Tensor& in, std::shared_ptr<N> node) {
  if (any_requires_grad({&in})) attach_node(out, node, {&in});
  return out;
}

}  // namespace

Tensor Tensor::view(const Shape& new_shape_in) const {
  Shape new_shape = new_shape_in;
  int64_t known = 1;
  int infer = -1;
  for (size_t i = 0; i < new_shape.size(); ++i) {
    if (new_shape[i] == -1) {
      LETHE_CHECK(infer < 0, "view: more than one -1 in ", shape_str(new_shape_in));
      infer = static_cast<int>(i);
    } else {
      LETHE_CHECK(new_shape[i] >= 0, "view: bad shape ", shape_str(new_shape_in));
      known *= new_shape[i];
    }
  }
  if (infer >= 0) {
    LETHE_CHECK(known > 0 && numel() % known == 0, "view: cannot infer -1 in ",
                shape_str(new_shape_in), " for ", str());
    new_shape[infer] = numel() / known;
  }
  LETHE_CHECK(shape_numel(new_shape) == numel(), "view/reshape: shape ", shape_str(new_shape_in),
              " does not match ", str(), " (", numel(), " elements)");
  LETHE_CHECK(is_contiguous(), "view: ", str(), " is not contiguous; use reshape()");
  Tensor out =
      make_view(storage(), storage_offset(), new_shape, contiguous_strides(new_shape), dtype());
  auto node = std::make_shared<ReshapeBackward>();
  node->in_shape = shape();
  return record(out, *this, node);
}

Tensor Tensor::reshape(const Shape& s) const {
  if (is_contiguous()) return view(s);
  return contiguous().view(s);
}

Tensor Tensor::slice(int d, int64_t start, int64_t end, int64_t step) const {
  d = wrap_dim(d, dim(), "slice");
  LETHE_CHECK(step >= 1, "slice: step must be >= 1, got ", step);
  int64_t n = shape()[d];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape s = shape(), st = strides();
  s[d] = (end - start + step - 1) / step;
  st[d] = strides()[d] * step;
  Tensor out = make_view(storage(), storage_offset() + start * strides()[d], s, st, dtype());
  auto node = std::make_shared<SliceBackward>();
  node->in_shape = shape();
  node->dim = d;
  node->start = start;
  node->end = end;
  node->step = step;
  return record(out, *this, node);
}

Tensor Tensor::select(int d, int64_t index) const {
  d = wrap_dim(d, dim(), "select");
  int64_t n = shape()[d];
  if (index < 0) index += n;
  LETHE_CHECK(index >= 0 && index < n, "select: index ", index, " out of range for dim ", d, " of ",
              str());
  return slice(d, index, index + 1).squeeze(d);
}

Tensor Tensor::permute(const std::vector<int>& dims) const {
  int n = dim();
  LETHE_CHECK(static_cast<int>(dims.size()) == n, "permute: ", dims.size(), " dims for ", str());
  std::vector<int> inverse(n, -1);
  Shape s(n), st(n);
  for (int i = 0; i < n; ++i) {
    int d = wrap_dim(dims[i], n, "permute");
    LETHE_CHECK(inverse[d] < 0, "permute: dim ", d, " repeated");
    inverse[d] = i;
    s[i] = shape()[d];
    st[i] = strides()[d];
  }
  Tensor out = make_view(storage(), storage_offset(), s, st, dtype());
  auto node = std::make_shared<PermuteBackward>();
  node->inverse = inverse;
  return record(out, *this, node);
}

Tensor Tensor::transpose(int d0, int d1) const {
  int n = dim();
  std::vector<int> dims(n);
  std::iota(dims.begin(), dims.end(), 0);
  std::swap(dims[wrap_dim(d0, n, "transpose")], dims[wrap_dim(d1, n, "transpose")]);
  return permute(dims);
}

Tensor Tensor::unsqueeze(int d) const {
  int n = dim();
  if (d < 0) d += n + 1;
  LETHE_CHECK(d >= 0 && d <= n, "unsqueeze: dim out of range for ", str());
  Shape s = shape(), st = strides();
  int64_t stride = d < n ? strides()[d] * shape()[d] : 1;
  s.insert(s.begin() + d, 1);
  st.insert(st.begin() + d, stride);
  Tensor out = make_view(storage(), storage_offset(), s, st, dtype());
  auto node = std::make_shared<ReshapeBackward>();
  node->in_shape = shape();
  return record(out, *this, node);
}

Tensor Tensor::squeeze(int d) const {
  d = wrap_dim(d, dim(), "squeeze");
  LETHE_CHECK(shape()[d] == 1, "squeeze: dim ", d, " of ", str(), " is not 1");
  Shape s = shape(), st = strides();
  s.erase(s.begin() + d);
  st.erase(st.begin() + d);
  Tensor out = make_view(storage(), storage_offset(), s, st, dtype());
  auto node = std::make_shared<ReshapeBackward>();
  node->in_shape = shape();
  return record(out, *this, node);
}

Tensor Tensor::expand(const Shape& target) const {
  int n = dim(), m = static_cast<int>(target.size());
  LETHE_CHECK(m >= n, "expand: cannot expand ", str(), " to ", shape_str(target));
  Shape st(m, 0);
  for (int i = 0; i < m; ++i) {
    int j = i - (m - n);
    if (j < 0) continue;
    if (shape()[j] == target[i]) {
      st[i] = strides()[j];
    } else {
      LETHE_CHECK(shape()[j] == 1, "expand: cannot broadcast ", str(), " to ", shape_str(target));
      st[i] = 0;
    }
  }
  Tensor out = make_view(storage(), storage_offset(), target, st, dtype());
  auto node = std::make_shared<ExpandBackward>();
  node->in_shape = shape();
  return record(out, *this, node);
}

// ---- copies ------------------------------------------------------------------------------------

static Tensor copy_contiguous(const Tensor& src) {
  Tensor out = Tensor::empty(src.shape(), src.dtype(), src.device());
  if (src.numel()) {
    backend(src.device())
        .copy_strided(src.dtype(), out.data_ptr(), layout_of(out), src.data_ptr(), layout_of(src));
  }
  return out;
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor out = copy_contiguous(*this);
  return record(out, *this, std::make_shared<CopyBackward>());
}

Tensor Tensor::to(DType target) const {
  if (target == dtype()) return *this;
  Tensor src = is_contiguous() ? *this : copy_contiguous(*this);
  Tensor out = empty(shape(), target, device());
  if (numel()) backend(device()).cast(dtype(), src.data_ptr(), target, out.data_ptr(), numel());
  if (!is_floating(target) || !is_floating(dtype())) return out;
  auto node = std::make_shared<CastBackward>();
  node->in_dtype = dtype();
  return record(out, *this, node);
}

Tensor Tensor::to(Device target) const {
  if (target == device()) return *this;
  Tensor src = is_contiguous() ? *this : copy_contiguous(*this);
  Tensor out = empty(shape(), dtype(), target);
  size_t bytes = static_cast<size_t>(numel()) * dtype_size(dtype());
  if (bytes) {
    if (device().is_cpu()) {
      backend(target).copy_from_host(out.data_ptr(), src.data_ptr(), bytes);
    } else if (target.is_cpu()) {
      backend(device()).copy_to_host(out.data_ptr(), src.data_ptr(), bytes);
    } else {
      Tensor host = src.to(Device::cpu());
      backend(target).copy_from_host(out.data_ptr(), host.data_ptr(), bytes);
    }
  }
  auto node = std::make_shared<DeviceBackward>();
  node->in_device = device();
  return record(out, *this, node);
}

std::vector<double> Tensor::to_double_vector() const {
  NoGradGuard ng;
  Tensor h = to(Device::cpu()).to(DType::f64).contiguous();
  const double* p = h.data<double>();
  return std::vector<double>(p, p + h.numel());
}

std::vector<float> Tensor::to_float_vector() const {
  NoGradGuard ng;
  Tensor h = to(Device::cpu()).to(DType::f32).contiguous();
  const float* p = h.data<float>();
  return std::vector<float>(p, p + h.numel());
}

std::vector<int64_t> Tensor::to_int_vector() const {
  NoGradGuard ng;
  Tensor h = to(Device::cpu()).to(DType::i64).contiguous();
  const int64_t* p = h.data<int64_t>();
  return std::vector<int64_t>(p, p + h.numel());
}

double Tensor::item() const {
  LETHE_CHECK(numel() == 1, "item(): ", str(), " has ", numel(), " elements, not 1");
  return to_double_vector()[0];
}

// ---- in-place ----------------------------------------------------------------------------------

Tensor& Tensor::fill_(double value) {
  ops_detail::check_inplace(*this, "fill_");
  if (numel() == 0) return *this;
  if (is_contiguous()) {
    backend(device()).fill(dtype(), data_ptr(), numel(), value);
  } else {
    Tensor src = full(shape(), value, dtype(), device());
    backend(device()).copy_strided(dtype(), data_ptr(), layout_of(*this), src.data_ptr(),
                                   layout_of(src));
  }
  return *this;
}

Tensor& Tensor::zero_() {
  return fill_(0.0);
}

Tensor& Tensor::normal_(uint64_t seed, uint64_t offset, double mean, double stddev) {
  ops_detail::check_inplace(*this, "normal_");
  check_random("normal_", dtype(), Distribution::normal, mean, stddev);
  fill_random(*this, Distribution::normal, seed, offset, mean, stddev);
  return *this;
}

Tensor& Tensor::uniform_(uint64_t seed, uint64_t offset, double low, double high) {
  ops_detail::check_inplace(*this, "uniform_");
  check_random("uniform_", dtype(), Distribution::uniform, low, high);
  fill_random(*this, Distribution::uniform, seed, offset, low, high);
  return *this;
}

Tensor& Tensor::copy_(const Tensor& src_in) {
  ops_detail::check_inplace(*this, "copy_");
  LETHE_CHECK(src_in.shape() == shape(), "copy_: source ", src_in.str(), " does not match ", str());
  NoGradGuard ng;
  Tensor src = src_in.to(dtype()).to(device());
  if (numel()) {
    backend(device()).copy_strided(dtype(), data_ptr(), layout_of(*this), src.data_ptr(),
                                   layout_of(src));
  }
  return *this;
}

// ---- autograd accessors --------------------------------------------------------------------

bool Tensor::requires_grad() const {
  const TensorImpl& t = checked(impl_);
  return t.autograd && (t.autograd->requires_grad || t.autograd->grad_fn);
}

Tensor& Tensor::set_requires_grad(bool value) {
  TensorImpl& t = const_cast<TensorImpl&>(checked(impl_));
  LETHE_CHECK(!(t.autograd && t.autograd->grad_fn), "set_requires_grad: ", str(),
              " is not a leaf (it is the result of ", t.autograd->grad_fn->name(),
              "); use detach()");
  LETHE_CHECK(!value || is_floating(t.dtype), "set_requires_grad: ", str(),
              " is not a floating-point tensor");
  t.meta().requires_grad = value;
  return *this;
}

bool Tensor::is_leaf() const {
  const TensorImpl& t = checked(impl_);
  return !(t.autograd && t.autograd->grad_fn);
}

Tensor Tensor::grad() const {
  const TensorImpl& t = checked(impl_);
  return t.autograd ? t.autograd->grad : Tensor();
}

void Tensor::set_grad(const Tensor& g) {
  LETHE_CHECK(!g.defined() || g.shape() == shape(), "set_grad: gradient ", g.str(),
              " does not match ", str());
  impl_->meta().grad = g;
}

void Tensor::zero_grad() {
  Tensor g = grad();
  if (g.defined()) {
    NoGradGuard ng;
    g.zero_();
  }
}

const std::shared_ptr<Node>& Tensor::grad_fn() const {
  static const std::shared_ptr<Node> none;
  const TensorImpl& t = checked(impl_);
  return t.autograd ? t.autograd->grad_fn : none;
}

void Tensor::set_grad_fn(std::shared_ptr<Node> fn) {
  impl_->meta().grad_fn = std::move(fn);
}

void Tensor::backward(const Tensor& seed, bool retain_graph) const {
  run_backward(*this, seed, retain_graph);
}

Tensor Tensor::detach() const {
  return make_view(storage(), storage_offset(), shape(), strides(), dtype());
}

}  // namespace lethe
