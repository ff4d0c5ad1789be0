// Helpers shared by the op implementations: argument checks with useful messages, broadcasting.
// Internal to engine/ops; not installed.
#pragma once

#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/device_backend.h"
#include "engine/ops.h"

namespace lethe::ops_detail {

// out = a + b's autograd node (elementwise.cpp), for an op whose kernel computed the sum itself
// (add_layer_norm). Call only when any_requires_grad({&a, &b}).
void attach_add_node(Tensor& out, const Tensor& a, const Tensor& b);
// out = dropout(x, p, true, seed, offset) + residual's node: x's gradient masked by the
// regenerated mask. Call only when any_requires_grad({&x, &residual}).
void attach_dropout_add_node(Tensor& out, const Tensor& x, const Tensor& residual, double p,
                             uint64_t seed, uint64_t offset);

// Same dtype and device for every defined input, and a float dtype the kernels compute in.

inline void check_float_inputs(const char* op, std::initializer_list<const Tensor*> ts) {
  const Tensor* first = nullptr;
  for (const Tensor* t : ts) {
    if (!t || !t->defined()) continue;
    if (!first) {
      first = t;
      LETHE_CHECK(t->dtype() == DType::f32 || t->dtype() == DType::f64, op, ": dtype ",
                  dtype_name(t->dtype()), " of ", t->str(),
                  " is not supported (ops compute in f32 or f64; convert with .to(DType::f32))");
      continue;
    }
    LETHE_CHECK(t->dtype() == first->dtype(), op, ": dtype mismatch, ", first->str(), " vs ",
                t->str());
    LETHE_CHECK(t->device() == first->device(), op, ": device mismatch, ", first->str(), " vs ",
                t->str());
  }
}

// Refuses an in-place change of t while grad mode is on and t requires grad: autograd would not
// see it, and a graph that saved t would silently read the new values.
inline void check_inplace(const Tensor& t, const char* op) {
  LETHE_CHECK(!(grad_mode_enabled() && t.requires_grad()), op, ": in-place change of ", t.str(),
              " which requires grad (wrap it in NoGradGuard)");
}

inline void check_defined(const char* op, const Tensor& t, const char* what) {
  LETHE_CHECK(t.defined(), op, ": ", what, " is an undefined tensor");
}

// numpy broadcast of two shapes; throws naming the op and both tensors.
inline Shape broadcast_shapes(const char* op, const Tensor& a, const Tensor& b) {
  const Shape& sa = a.shape();
  const Shape& sb = b.shape();
  size_t n = std::max(sa.size(), sb.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - sa.size() ? 1 : sa[i - (n - sa.size())];
    int64_t db = i < n - sb.size() ? 1 : sb[i - (n - sb.size())];
    LETHE_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", shape_str(sa), " and ",
                shape_str(sb), " cannot be broadcast (", a.str(), " vs ", b.str(), ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

// Layout of t viewed with shape `target` (broadcast dims get stride 0).
inline kernels::Layout broadcast_layout(const Tensor& t, const Shape& target) {
  kernels::Layout l;
  l.ndim = static_cast<int>(target.size());
  int off = l.ndim - t.dim();
  for (int d = 0; d < l.ndim; ++d) {
    l.shape[d] = target[d];
    int j = d - off;
    l.stride[d] = (j < 0 || t.shape()[j] == 1) ? 0 : t.strides()[j];
  }
  return l;
}

// A flat index into `shape` as a multi-index, e.g. "[1, 0, 3]" (for error messages).
inline std::string index_string(int64_t flat, const Shape& shape) {
  std::vector<int64_t> idx(shape.size());
  for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
    idx[d] = shape[d] ? flat % shape[d] : 0;
    flat = shape[d] ? flat / shape[d] : 0;
  }
  std::string out = "[";
  for (size_t d = 0; d < idx.size(); ++d) out += (d ? ", " : "") + std::to_string(idx[d]);
  return out + "]";
}

inline int wrap_dim(int d, int n, const char* op) {
  int w = d < 0 ? d + n : d;
  LETHE_CHECK(w >= 0 && w < n, op, ": dim ", d, " out of range for a ", n, "-d tensor");
  return w;
}

}  // namespace lethe::ops_detail
