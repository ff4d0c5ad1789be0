// backend.h — the one list of primitives every device implements (CPU always, CUDA when built).
// Kernels see raw pointers, sizes and dtypes only: no Tensor, no autograd. Float kernels take
// DType f32 or f64 (f64 for gradient checks); bf16/f16 appear only in casts and GEMM operands.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/dtype.h"

namespace lethe::kernels {

constexpr int kMaxDims = 8;

// A strided view of n-dimensional data: element (i0..ik) lives at ptr[sum(i_d * stride[d])].
struct Layout {
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t stride[kMaxDims] = {};
  int64_t numel() const {
    int64_t n = 1;
    for (int d = 0; d < ndim; ++d) n *= shape[d];
    return n;
  }
};

enum class UnaryOp : uint8_t {
  neg,
  relu,
  gelu,
  exp,
  log,
  sqrt,
  square,
  tanh,
  sigmoid,
  log_sigmoid,
  silu  // x · sigmoid(x) (Llama's MLP activation)
};
enum class BinaryOp : uint8_t { add, sub, mul, div };

enum class CrossEntropyMode : uint8_t {
  nll,           // -log p_target
  unlikelihood,  // -log(1 - c * p_target), c in (0, 1]
};

// GEMM operand precision: f32 tensors may be multiplied with bf16 operands and f32 accumulation.
enum class GemmCompute : uint8_t { native, bf16 };

struct GemmArgs {
  DType dtype = DType::f32;  // dtype of A, B and C (f32 or f64)
  GemmCompute compute = GemmCompute::native;
  bool trans_a = false, trans_b = false;  // row-major; op(A) is [m, k], op(B) is [k, n]
  int64_t m = 0, n = 0, k = 0;
  const void* a = nullptr;
  int64_t lda = 0;
  const void* b = nullptr;
  int64_t ldb = 0;
  void* c = nullptr;
  int64_t ldc = 0;
  double alpha = 1.0, beta = 0.0;  // C = alpha * op(A) op(B) + beta * C
  int64_t batch = 1;               // batched with element strides between matrices
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;
  const void* bias = nullptr;  // optional [n], added to every row of C (after alpha/beta)
  bool relu = false;           // C = max(C, 0) last (linear_relu's epilogue)
};

struct AttentionArgs {
  DType dtype = DType::f32;
  int64_t batch = 0, heads = 0, q_len = 0, kv_len = 0, head_dim = 0;
  // Grouped-query attention (Llama-2-70b, Llama-3, Qwen2, Mistral): k and v have kv_heads heads,
  // heads % kv_heads == 0, and query head h reads kv head h / (heads / kv_heads) — no copies of
  // k and v per query head; dk and dv sum over each group. 0: kv_heads = heads.
  int64_t kv_heads = 0;
  bool causal =
      true;  // query i (absolute position i + kv_len - q_len) sees keys j <= that position
  double scale = 1.0;  // applied to q k^T (OPT pre-scales q, so it passes 1.0)
  // q [B,H,Tq,D], k/v [B,KVH,Tk,D], out [B,H,Tq,D], contiguous except that the (b, h) matrices of
  // k and v may lie kv_stride elements apart (rows stay head_dim apart): a preallocated KV cache
  // read in place. 0: kv_len · head_dim. Forward only; the backward needs contiguous k and v.
  int64_t kv_stride = 0;
  // bf16: on CUDA the forward's q·kᵀ and p·v take bf16 operands with f32 accumulation (tensor
  // cores; f32 tensors, head dims a multiple of 16), the rest stays f32; the CPU backend computes
  // in f32 (model.dtype: bf16 sets it, as GemmArgs::compute).
  GemmCompute compute = GemmCompute::native;
  // Dropout on the probabilities (training; 0: none). Element (b, h, i, j) is kept, scaled by
  // 1/(1 − p) in T, iff rng::dropout_keeps(dropout_seed, dropout_offset + ((b·H + h)·Tq + i)·Tk +
  // j) — the mask dropout() draws over the contiguous [B, H, Tq, Tk] probabilities. lse is the
  // undropped softmax's; the backward regenerates the mask (none is stored).
  double dropout = 0.0;
  uint64_t dropout_seed = 0, dropout_offset = 0;
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  const int64_t* key_mask = nullptr;  // optional [B,Tk], nonzero = attend; null = all keys
  void* out = nullptr;
  float* lse = nullptr;  // [B,H,Tq] log-sum-exp of the scaled, masked scores (saved for backward);
                         // -inf for a query row that sees no key (its output is zero)
};

struct AttentionBackwardArgs {
  AttentionArgs fwd;  // the forward's arguments, with out and lse filled
  const void* dout = nullptr;
  void* dq = nullptr;  // written (not accumulated)
  void* dk = nullptr;
  void* dv = nullptr;
};

// Rotary position embedding (Llama's RoPE, transformers' rotate_half layout) of x [B, H, T, D],
// D even: with angle θ = position[b, t] · inv_freq[i] (in T: f32 rows use f32 angles, as
// transformers builds its cos/sin tables in float32), c = a·cos θ, s = a·sin θ (a the attention
// scaling of llama3/yarn, 1 otherwise), for i < D/2:
//   y[i] = x[i]·c − x[i + D/2]·s,   y[i + D/2] = x[i + D/2]·c + x[i]·s.
// inverse: the rotation by −θ (the backward: dx = a·Rᵀ dy).
struct RopeArgs {
  DType dtype = DType::f32;
  int64_t batch = 0, heads = 0, seq = 0, head_dim = 0;
  const void* x = nullptr;             // [B, H, T, D] contiguous
  void* y = nullptr;                   // [B, H, T, D]; may be x (in place)
  const int64_t* positions = nullptr;  // [B, T]
  const float* inv_freq = nullptr;     // [D / 2]
  double attention_scaling = 1.0;
  bool inverse = false;
};

struct CrossEntropyArgs {
  DType dtype = DType::f32;
  int64_t rows = 0, vocab = 0;
  const void* logits = nullptr;      // [rows, vocab]
  const int64_t* targets = nullptr;  // [rows]; ignore_index rows contribute 0 and get 0 gradient
  const float* weights = nullptr;    // optional [rows] per-token weight, may be negative
  int64_t ignore_index = -100;
  CrossEntropyMode mode = CrossEntropyMode::nll;
  double c = 1.0;        // unlikelihood coefficient
  void* loss = nullptr;  // [rows] weighted per-token loss (0 on ignored rows)
  float* lse = nullptr;  // [rows] saved log-sum-exp of the row's logits
};

struct CrossEntropyBackwardArgs {
  CrossEntropyArgs fwd;         // with lse filled
  const void* dloss = nullptr;  // [rows] upstream gradient of each row's loss
  void* dlogits = nullptr;      // [rows, vocab], written; may be fwd.logits itself (in place)
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;

  // ---- memory -------------------------------------------------------------------------
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* ptr, size_t bytes) = 0;
  // Copies between this device and host memory (dst/src on the named side).
  virtual void copy_to_host(void* host_dst, const void* dev_src, size_t bytes) = 0;
  virtual void copy_from_host(void* dev_dst, const void* host_src, size_t bytes) = 0;
  virtual void copy_on_device(void* dst, const void* src, size_t bytes) = 0;
  virtual void synchronize() = 0;

  // ---- layout, casts, fills -----------------------------------------------------------
  // dst[dst_layout] = src[src_layout]; both layouts have the same shape; same dtype.
  virtual void copy_strided(DType dtype, void* dst, const Layout& dst_layout, const void* src,
                            const Layout& src_layout) = 0;
  virtual void cast(DType from, const void* src, DType to, void* dst, int64_t n) = 0;
  virtual void fill(DType dtype, void* dst, int64_t n, double value) = 0;
  // Counter-based RNG: element i depends only on (seed, offset + i), identical on every device.
  virtual void fill_uniform(DType dtype, void* dst, int64_t n, uint64_t seed, uint64_t offset,
                            double low, double high) = 0;
  virtual void fill_normal(DType dtype, void* dst, int64_t n, uint64_t seed, uint64_t offset,
                           double mean, double stddev) = 0;
  // mask[i] = (uniform(seed, offset+i) >= p) ? 1/(1-p) : 0
  virtual void dropout_mask(DType dtype, void* mask, int64_t n, uint64_t seed, uint64_t offset,
                            double p) = 0;

  // ---- elementwise --------------------------------------------------------------------
  virtual void unary(UnaryOp op, DType dtype, int64_t n, const void* x, void* y) = 0;
  // dx = dy * f'(x); y = f(x) is given for ops whose derivative is cheaper from it.
  virtual void unary_backward(UnaryOp op, DType dtype, int64_t n, const void* x, const void* y,
                              const void* dy, void* dx) = 0;
  // out[out_layout] = a[a_layout] (op) b[b_layout]; a/b layouts have out's shape (broadcast
  // dims have stride 0).
  virtual void binary(BinaryOp op, DType dtype, void* out, const Layout& out_layout, const void* a,
                      const Layout& a_layout, const void* b, const Layout& b_layout) = 0;
  // y = alpha * x + beta * y
  virtual void axpby(DType dtype, int64_t n, double alpha, const void* x, double beta, void* y) = 0;
  // out[o, i] = sum_r in[o, r, i]  (in is contiguous [outer, reduce, inner])
  virtual void reduce_sum(DType dtype, const void* in, int64_t outer, int64_t reduce, int64_t inner,
                          void* out) = 0;
  // Sum of x[i] * y[i] in double precision accumulation, returned to the host.
  virtual double dot(DType dtype, int64_t n, const void* x, const void* y) = 0;
  // out[i * k + j] = <bufs[i], bufs[j]> for k buffers of n elements each, in one pass.
  virtual void gram(DType dtype, int64_t n, int k, const void* const* bufs, double* out) = 0;

  // ---- dense ----------------------------------------------------------------------------
  virtual void gemm(const GemmArgs& args) = 0;

  // ---- normalisation and softmax ---------------------------------------------------------
  // y = (x - mean) * rstd * gamma + beta per row; mean/rstd [rows] saved as double whatever the
  // dtype (they hold the row statistics in the dtype's own precision: f32 values for f32 rows,
  // full f64 for f64 rows, so the f64 backward is exact to f64 rounding).
  virtual void layernorm_forward(DType dtype, int64_t rows, int64_t cols, const void* x,
                                 const void* gamma, const void* beta, double eps, void* y,
                                 double* mean, double* rstd) = 0;
  // The residual add fused with the layer norm that reads it: sum = dropout(x) + residual
  // (written) and y = layernorm(sum) per row, each the same numbers as dropout_mask + binary mul,
  // binary add and layernorm_forward on this backend (bit for bit), in one pass over the rows.
  // Dropout (p > 0) keeps x[i] iff uniform(seed, offset + i) >= p, scaled by 1/(1 − p) in T.
  virtual void add_layernorm_forward(DType dtype, int64_t rows, int64_t cols, const void* x,
                                     const void* residual, const void* gamma, const void* beta,
                                     double eps, void* sum, void* y, double* mean, double* rstd,
                                     double dropout, uint64_t seed, uint64_t offset) = 0;
  // RMS norm (Llama, Qwen2, Mistral): y = gamma · (x · rstd) with rstd = 1/√(mean(x²) + eps) per
  // row, in T (transformers' RMSNorm computes in float32); rstd saved per row. gamma may be null.
  virtual void rmsnorm_forward(DType dtype, int64_t rows, int64_t cols, const void* x,
                               const void* gamma, double eps, void* y, double* rstd) = 0;
  // dx = rstd · (g − x̂ · mean(g · x̂)) with g = dy · gamma, x̂ = x · rstd (written when non-null);
  // dgamma += Σ_rows dy · x̂ (when non-null), summed in a fixed order.
  virtual void rmsnorm_backward(DType dtype, int64_t rows, int64_t cols, const void* x,
                                const void* gamma, const double* rstd, const void* dy, void* dx,
                                void* dgamma) = 0;
  // dx written; dgamma/dbeta accumulated (+=) when non-null.
  virtual void layernorm_backward(DType dtype, int64_t rows, int64_t cols, const void* x,
                                  const void* gamma, const double* mean, const double* rstd,
                                  const void* dy, void* dx, void* dgamma, void* dbeta) = 0;
  // Row-wise softmax or log_softmax over the last dim.
  virtual void softmax_forward(DType dtype, int64_t rows, int64_t cols, const void* x, void* y,
                               bool log) = 0;
  virtual void softmax_backward(DType dtype, int64_t rows, int64_t cols, const void* y,
                                const void* dy, void* dx, bool log) = 0;

  // ---- attention -----------------------------------------------------------------------
  virtual void attention_forward(const AttentionArgs& args) = 0;
  virtual void attention_backward(const AttentionBackwardArgs& args) = 0;

  // ---- embedding, gather ------------------------------------------------------------------
  // out[i, :] = table[ids[i], :]; ids must be in [0, num_rows) (checked by the op).
  virtual void embedding_forward(DType dtype, int64_t n, int64_t dim, const int64_t* ids,
                                 const void* table, void* out) = 0;
  // dtable[ids[i], :] += dout[i, :], except rows equal to padding_idx (pass -1 for none).
  virtual void embedding_backward(DType dtype, int64_t n, int64_t dim, const int64_t* ids,
                                  const void* dout, void* dtable, int64_t padding_idx) = 0;

  // ---- losses ------------------------------------------------------------------------------
  virtual void rope(const RopeArgs& args) = 0;
  virtual void cross_entropy_forward(const CrossEntropyArgs& args) = 0;
  virtual void cross_entropy_backward(const CrossEntropyBackwardArgs& args) = 0;
  // cross_entropy_forward (loss, lse) and cross_entropy_backward (dlogits, which may be the
  // logits themselves: in place) in one call: the fused head's chunk when the gradient is taken
  // in the forward pass. This default runs the two; a backend may do it in one pass over the row.
  virtual void cross_entropy_fused(const CrossEntropyBackwardArgs& args) {
    cross_entropy_forward(args.fwd);
    cross_entropy_backward(args);
  }
  // out[r] = KL(softmax(ref[r]) || softmax(x[r])) for each row.
  virtual void kl_div_forward(DType dtype, int64_t rows, int64_t vocab, const void* ref_logits,
                              const void* logits, void* out) = 0;
  // d/dlogits and d/dref (either may be null) of sum_r dout[r] * out[r]; written.
  virtual void kl_div_backward(DType dtype, int64_t rows, int64_t vocab, const void* ref_logits,
                               const void* logits, const void* dout, void* dlogits, void* dref) = 0;

  // ---- optimizers (f32 params, grads and state) -------------------------------------------
  // PyTorch AdamW: p -= lr*wd*p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
  // p -= lr * (m / bc1) / (sqrt(v / bc2) + eps)
  virtual void adamw_step(int64_t n, float* param, const float* grad, float* m, float* v, double lr,
                          double beta1, double beta2, double eps, double weight_decay,
                          double bias_correction1, double bias_correction2) = 0;
  // PyTorch SGD: g += wd p; buf = first ? g : momentum buf + (1-dampening) g;
  // g = nesterov ? g + momentum buf : buf (when momentum != 0); p -= lr g
  virtual void sgd_step(int64_t n, float* param, const float* grad, float* momentum_buf, double lr,
                        double momentum, double dampening, double weight_decay, bool nesterov,
                        bool first_step) = 0;
};

enum class DeviceType : uint8_t { cpu, cuda };

// The CPU backend: always present.
Backend& cpu_backend();

// Hands the CPU backend's cached free blocks (kept for reuse by later allocations of the same size)
// back to the OS: after a one-off burst of allocations that will not recur (e.g. building a model).
void cpu_release_cached_blocks();

// How the CPU backend runs f32/bf16 GEMMs: oneDNN matmul primitives cached per shape (the
// default), or dnnl_sgemm per matrix (the earlier path, kept as the reference; also chosen by
// the environment variable LETHE_CPU_GEMM=sgemm). Process-wide; for tests and benchmarks.
enum class CpuGemmPath : uint8_t { matmul, sgemm };
void set_cpu_gemm_path(CpuGemmPath path);
CpuGemmPath cpu_gemm_path();
// One line for benchmark output: the GEMM path, oneDNN's ISA, and whether bf16 GEMMs are native
// (AMX) or f32 GEMMs on bf16-rounded operands (everywhere else, AVX512-BF16 included).
std::string cpu_gemm_description();
// The implementation the CPU backend picks for `args` (oneDNN's name, or "sgemm ...").
std::string cpu_gemm_implementation(const GemmArgs& args);
// The CUDA backend on GPU `device`, or nullptr when lethe was built without CUDA or that GPU is
// not visible. A process drives one GPU (under mpirun, one rank per GPU: rank r of a machine takes
// cuda:r): the first call binds it, and another index afterwards gives nullptr.
Backend* cuda_backend(int device = 0);
// Why cuda_backend(device) is null (for error messages).
std::string cuda_unavailable_reason(int device = 0);

}  // namespace lethe::kernels
