// embedding(table, ids, padding_idx): a row gather with a scatter-add backward into the table
// (nn.Embedding semantics: the padding row gets no gradient; ids get none).
#include "engine/ops/common.h"

namespace lethe {

using namespace ops_detail;

namespace {

struct EmbeddingBackward : Node {
  Tensor ids;  // contiguous i64
  Shape table_shape;
  DType dtype = DType::f32;
  Device device;
  int64_t padding_idx = -1;  // -1: none (already wrapped to [0, V))
  const char* name() const override { return "EmbeddingBackward"; }
  std::vector<Tensor> apply(const Tensor& g_in) override {
    check_not_released(*this);
    Tensor g = g_in.contiguous();
    // Scatter-add straight into the table's bound grad when it has one (no zeroed table-sized
    // temporary); else into a fresh zero table.
    Tensor sink = leaf_grad_sink(*this, 0, table_shape, dtype);
    Tensor dtable = sink.defined() ? sink : Tensor::zeros(table_shape, dtype, device);
    int64_t n = ids.numel(), dim = table_shape[1];
    if (n && dim) {
      backend(device).embedding_backward(dtype, n, dim, ids.data<int64_t>(), g.data_ptr(),
                                         dtable.data_ptr(), padding_idx);
    }
    if (sink.defined()) return {Tensor()};
    return {dtable};
  }
  void release_saved() override { ids = Tensor(); }
};

// Every id in [0, rows); the message names the first bad id and its position in `ids`.
void check_ids(const char* op, const Tensor& ids, int64_t rows) {
  std::vector<int64_t> v = ids.to_int_vector();
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] >= 0 && v[i] < rows) continue;
    // Position as a multi-index into ids' shape.
    std::string pos = "[";
    int64_t rem = static_cast<int64_t>(i);
    std::vector<int64_t> idx(ids.shape().size());
    for (int d = ids.dim() - 1; d >= 0; --d) {
      idx[d] = rem % ids.shape()[d];
      rem /= ids.shape()[d];
    }
    for (size_t d = 0; d < idx.size(); ++d) pos += (d ? ", " : "") + std::to_string(idx[d]);
    pos += "]";
    LETHE_FAIL(op, ": id ", v[i], " at position ", pos, " of ids ", ids.str(),
               " is outside the table's rows [0, ", rows, ")");
  }
}

}  // namespace

Tensor embedding(const Tensor& table, const Tensor& ids_in, std::optional<int64_t> padding_idx) {
  const char* op = "embedding";
  check_defined(op, table, "table");
  check_defined(op, ids_in, "ids");
  check_float_inputs(op, {&table});
  LETHE_CHECK(table.dim() == 2, op, ": table must be 2-D [rows, dim], got ", table.str());
  LETHE_CHECK(ids_in.dtype() == DType::i64, op, ": ids must be i64, got ", ids_in.str());
  LETHE_CHECK(ids_in.device() == table.device() || ids_in.device() == Device::cpu(), op,
              ": device mismatch, table ", table.str(), " vs ids ", ids_in.str());
  LETHE_CHECK(ids_in.dim() + 1 <= kernels::kMaxDims, op, ": ids have too many dims, ",
              ids_in.str());
  const int64_t rows = table.shape()[0], dim = table.shape()[1];
  int64_t pad = -1;
  if (padding_idx) {  // as nn.Embedding: a negative padding_idx counts from the end
    int64_t p = *padding_idx;
    LETHE_CHECK(p >= -rows && p < rows, op, ": padding_idx ", p, " is outside [", -rows, ", ", rows,
                ") for table ", table.str());
    pad = p < 0 ? p + rows : p;
  }
  // A host-side check: ids on the host are checked where they are and then copied to the table's
  // device (no device→host sync); ids already on a device cost one copy back.
  Tensor ids = ids_in.contiguous();
  check_ids(op, ids, rows);
  ids = ids.to(table.device());

  Tensor tab = table.detach().contiguous();
  Shape out_shape = ids.shape();
  out_shape.push_back(dim);
  Tensor out = Tensor::empty(out_shape, table.dtype(), table.device());
  if (out.numel()) {
    backend(table.device())
        .embedding_forward(table.dtype(), ids.numel(), dim, ids.data<int64_t>(), tab.data_ptr(),
                           out.data_ptr());
  }
  if (any_requires_grad({&table})) {
    auto node = std::make_shared<EmbeddingBackward>();
    node->ids = ids.detach();
    node->table_shape = table.shape();
    node->dtype = table.dtype();
    node->device = table.device();
    node->padding_idx = pad;
    attach_node(out, node, {&table});
  }
  return out;
}

}  // namespace lethe
