// Tensor: a shared handle to (storage, offset, shape, strides, dtype, device) with autograd state.
// Views share storage. Math lives in ops.h; this file must not call kernels beyond copies/fills.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

// DType (kernels/dtype.h) and lethe::Error (engine/error.h over kernels/error.h) are the bottom
// floor's vocabulary types, shared by every layer; nothing else of kernels/ is visible here (the
// engine's own .cpp files reach the backends through engine/device_backend.h).
#include "engine/error.h"
#include "kernels/dtype.h"

namespace lethe {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);
Shape contiguous_strides(const Shape& s);

// The kinds of device a tensor can live on.
enum class DeviceKind : uint8_t { cpu, cuda };

struct Device {
  DeviceKind type = DeviceKind::cpu;
  int index = 0;
  static Device cpu() { return {}; }
  static Device cuda(int i = 0) { return {DeviceKind::cuda, i}; }
  bool is_cpu() const { return type == DeviceKind::cpu; }
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const;
  // "cpu", "cuda", "cuda:1"
  static Device parse(const std::string& s);
};

// Waits until every kernel queued on the device has finished (a no-op on the CPU, whose kernels
// return when done); throws lethe::Error when the device is unavailable.
void synchronize(Device d);

// Bytes on one device. Either owned (allocated by the device's backend) or borrowed (e.g. an mmap
// region) with a keep-alive handle.
class Storage {
 public:
  Storage(size_t bytes, Device device);
  Storage(void* borrowed, size_t bytes, Device device, std::shared_ptr<const void> keepalive);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  Device device_;
  std::shared_ptr<const void> keepalive_;  // set for borrowed memory
};

class Node;
struct TensorImpl;

class Tensor {
 public:
  Tensor() = default;  // undefined
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- factories ----------------------------------------------------------------------------
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor ones(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32,
                     Device device = Device::cpu());
  // Copies host values (converted to dtype) into a new tensor of the given shape.
  static Tensor from_vector(const std::vector<double>& values, const Shape& shape,
                            DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor from_vector(const std::vector<float>& values, const Shape& shape,
                            DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor from_vector(const std::vector<int64_t>& values, const Shape& shape,
                            DType dtype = DType::i64, Device device = Device::cpu());
  static Tensor scalar(double value, DType dtype = DType::f32, Device device = Device::cpu());
  // Seeded random tensors from the counter-based generator (kernels/rng.h): the same
  // (seed, offset) gives the same values on every device and thread count.
  static Tensor randn(const Shape& shape, uint64_t seed, double mean = 0.0, double stddev = 1.0,
                      DType dtype = DType::f32, Device device = Device::cpu(), uint64_t offset = 0);
  static Tensor rand(const Shape& shape, uint64_t seed, double low = 0.0, double high = 1.0,
                     DType dtype = DType::f32, Device device = Device::cpu(), uint64_t offset = 0);
  // Wraps existing bytes without copying (e.g. an mmap'd safetensors tensor); keepalive owns them.
  static Tensor from_borrowed(void* data, const Shape& shape, DType dtype,
                              std::shared_ptr<const void> keepalive, Device device = Device::cpu());

  // ---- metadata -------------------------------------------------------------------------------
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  const Shape& strides() const;
  int64_t size(int dim) const;
  int dim() const { return static_cast<int>(shape().size()); }
  int64_t numel() const;
  DType dtype() const;
  Device device() const;
  int64_t storage_offset() const;  // in elements
  bool is_contiguous() const;
  std::string str() const;  // "f32[2, 3] cpu"
  const std::shared_ptr<Storage>& storage() const;
  void* data_ptr() const;  // first element
  template <typename T>
  T* data() const {
    return static_cast<T*>(data_ptr());
  }
  // ---- views (share storage; differentiable) --------------------------------------------------
  Tensor reshape(const Shape& shape) const;  // a view when possible, else a copy; -1 infers
  Tensor view(const Shape& shape) const;     // must be viewable without a copy
  Tensor slice(int dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int dim, int64_t index) const;  // slice + drop the dim
  Tensor transpose(int d0, int d1) const;
  Tensor permute(const std::vector<int>& dims) const;
  Tensor unsqueeze(int dim) const;
  Tensor squeeze(int dim) const;
  // Broadcast view (stride 0) to a larger shape, numpy rules. Differentiable (sums back).
  Tensor expand(const Shape& shape) const;

  // ---- copies (differentiable) -----------------------------------------------------------------
  Tensor contiguous() const;  // this when already contiguous
  Tensor clone() const;       // always a fresh contiguous copy
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;

  // ---- host access
  // -------------------------------------------------------------------------------
  std::vector<double> to_double_vector() const;  // any dtype, any device, any layout
  std::vector<float> to_float_vector() const;
  std::vector<int64_t> to_int_vector() const;
  double item() const;  // one-element tensors

  // ---- in-place (not recorded by autograd; refuse tensors that need grad while grad mode is on)
  Tensor& zero_();
  Tensor& fill_(double value);
  Tensor& copy_(const Tensor& src);  // same shape; converts dtype and device
  // Seeded random values from the counter-based generator, as randn/rand: element i (in logical
  // order, whatever the strides) depends only on (seed, offset + i). Floating dtypes only.
  Tensor& normal_(uint64_t seed, uint64_t offset, double mean, double stddev);
  Tensor& uniform_(uint64_t seed, uint64_t offset, double low, double high);

  // ---- autograd ------------------------------------------------------------------------------
  bool requires_grad() const;
  Tensor& set_requires_grad(bool value = true);  // leaves only
  bool is_leaf() const;
  Tensor grad() const;             // undefined until a backward reaches this leaf
  void set_grad(const Tensor& g);  // e.g. a view into a flat gradient buffer
  void zero_grad();                // zeroes the grad in place (keeps views into flat buffers)
  const std::shared_ptr<Node>& grad_fn() const;
  void set_grad_fn(std::shared_ptr<Node> fn);
  // Backpropagates from this tensor. A non-scalar needs an explicit seed of the same shape.
  // The graph's saved tensors are freed afterwards unless retain_graph.
  void backward(const Tensor& seed = Tensor(), bool retain_graph = false) const;
  Tensor detach() const;  // shares storage, no autograd history

  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

struct AutogradMeta {
  bool requires_grad = false;
  Tensor grad;
  std::shared_ptr<Node> grad_fn;         // set for non-leaf results of differentiable ops
  std::weak_ptr<Node> grad_accumulator;  // for leaves: the node that accumulates into grad
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // elements
  Shape shape, strides;
  DType dtype = DType::f32;
  std::unique_ptr<AutogradMeta> autograd;  // null until needed
  AutogradMeta& meta() {
    if (!autograd) autograd = std::make_unique<AutogradMeta>();
    return *autograd;
  }
};

// Creates a tensor header over storage with arbitrary shape/strides (used by views and ops).
Tensor make_view(const std::shared_ptr<Storage>& storage, int64_t offset, const Shape& shape,
                 const Shape& strides, DType dtype);

}  // namespace lethe
