// CUDA embedding gather/scatter-add, cross-entropy (NLL and unlikelihood) and row-wise KL, forward
// and backward: one block per row for the losses, the softmax fused into each.
#include "kernels/cuda/cuda_common.cuh"

namespace lethe::kernels {

namespace {

unsigned row_blocks(int64_t rows) {
  return static_cast<unsigned>(rows < 65535 ? rows : 65535);
}

// A row gather of any dtype (by element size).
template <typename T>
__global__ void embedding_forward_kernel(int64_t n, int64_t dim, const int64_t* ids, const T* table,
                                         T* out) {
  int64_t total = n * dim;
  for (int64_t t = global_index(); t < total; t += global_stride()) {
    int64_t i = t / dim, d = t % dim;
    out[t] = table[ids[i] * dim + d];
  }
}

// Rows repeat in a batch, so the scatter-add uses atomics (order, and so the last bits, vary).
template <typename T>
__global__ void embedding_backward_kernel(int64_t n, int64_t dim, const int64_t* ids, const T* dout,
                                          T* dtable, int64_t padding_idx) {
  int64_t total = n * dim;
  for (int64_t t = global_index(); t < total; t += global_stride()) {
    int64_t i = t / dim, d = t % dim;
    int64_t id = ids[i];
    if (id == padding_idx) continue;
    atomicAdd(&dtable[id * dim + d], dout[t]);
  }
}

// log sum_j exp(x_j) over j != skip (skip < 0: all j), returned to every thread of the block;
// -inf when nothing is summed, +inf for a row with a +inf logit (as the CPU backend does).
template <typename T>
__device__ T row_lse(const T* x, int64_t cols, int64_t skip, T* scratch) {
  T m = dev_neg_inf<T>();
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
    if (c != skip) m = fmax(m, x[c]);
  m = block_max(m, scratch);
  if (isinf(m)) return m;
  T s = 0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
    if (c != skip) s += dev_exp(x[c] - m);
  s = block_sum(s, scratch);
  return m + dev_log(s);
}

// log(exp(a) + exp(b)), exact for -inf arguments.
template <typename T>
__device__ T log_add_exp(T a, T b) {
  if (a == dev_neg_inf<T>()) return b;
  if (b == dev_neg_inf<T>()) return a;
  T hi = fmax(a, b), lo = fmin(a, b);
  return hi + dev_log1p(dev_exp(lo - hi));
}

// The unlikelihood term's log-domain statistics for target t (the CPU backend's formulation):
// lse = log sum_j e^x_j, lse_o = log sum_{j != t} e^x_j, log_u = lse + log(1 - c p_t), computed
// without the cancelling subtraction 1 - c p_t.
template <typename T>
struct UnlikelihoodStats {
  T lse, lse_o, log_u;
};
template <typename T>
__device__ UnlikelihoodStats<T> unlikelihood_stats(const T* x, int64_t cols, int64_t t, double c,
                                                   T* scratch) {
  UnlikelihoodStats<T> s;
  const T xt = x[t];
  s.lse_o = row_lse(x, cols, t, scratch);
  s.lse = log_add_exp(s.lse_o, xt);
  s.log_u = c >= 1.0 ? s.lse_o : log_add_exp(s.lse_o, dev_log1p(static_cast<T>(-c)) + xt);
  return s;
}

// log(1 - c p_t) is floored at log(1e-30), as on the CPU: the loss is capped at ~69.08.
constexpr double kUnlikelihoodLogFloor = -69.07755278982137;

template <typename T>
__global__ void cross_entropy_forward_kernel(CrossEntropyArgs a) {
  __shared__ T scratch[32];
  const T* logits = static_cast<const T*>(a.logits);
  T* loss = static_cast<T*>(a.loss);
  for (int64_t r = blockIdx.x; r < a.rows; r += gridDim.x) {
    const T* row = logits + r * a.vocab;
    const int64_t t = a.targets[r];
    const bool valid = t != a.ignore_index;
    const bool in_range = t >= 0 && t < a.vocab;  // the op validates; never read out of bounds
    T lse, base = 0;
    if (valid && in_range && a.mode == CrossEntropyMode::unlikelihood) {
      UnlikelihoodStats<T> s = unlikelihood_stats(row, a.vocab, t, a.c, scratch);
      lse = s.lse;
      // -log(1 - c p_t): log_u - lse cancels to a few ulps of lse when c p_t is small (in f32 a
      // 2.7e-3 relative error at V = 4097, found under the emulator), so that case takes log1p.
      const T cpt = static_cast<T>(a.c) * dev_exp(row[t] - lse);
      base = cpt <= T(0.5) ? -dev_log1p(-cpt)
                           : -fmax(s.log_u - s.lse, static_cast<T>(kUnlikelihoodLogFloor));
    } else {
      lse = row_lse(row, a.vocab, int64_t{-1}, scratch);
      if (valid) base = in_range ? lse - row[t] : static_cast<T>(NAN);
    }
    if (threadIdx.x == 0) {
      if (a.lse) a.lse[r] = static_cast<float>(lse);
      T w = a.weights ? static_cast<T>(a.weights[r]) : T(1);
      loss[r] = valid ? w * base : T(0);
    }
  }
}

// nll: d = g (p_j - [j == t]); unlikelihood: d = g c p_t ([j == t] - p_j) / (1 - c p_t), written
// as -k e^{x_j - log_u} (j != t) and k e^{lse_o - log_u} (j = t) with k = g c p_t: no overflow.
// f32 nll uses the saved lse; f64 and unlikelihood recompute the row statistics.
template <typename T>
__global__ void cross_entropy_backward_kernel(CrossEntropyBackwardArgs args) {
  __shared__ T scratch[32];
  const CrossEntropyArgs& a = args.fwd;
  const T* logits = static_cast<const T*>(a.logits);
  const T* dloss = static_cast<const T*>(args.dloss);
  T* dlogits = static_cast<T*>(args.dlogits);
  const bool use_saved = sizeof(T) == 4 && a.lse != nullptr && a.mode == CrossEntropyMode::nll;
  for (int64_t r = blockIdx.x; r < a.rows; r += gridDim.x) {
    const T* row = logits + r * a.vocab;
    T* drow = dlogits + r * a.vocab;
    const int64_t t = a.targets[r];
    if (t == a.ignore_index || t < 0 || t >= a.vocab) {
      for (int64_t c = threadIdx.x; c < a.vocab; c += blockDim.x) drow[c] = T(0);
      continue;
    }
    const T g = dloss[r] * (a.weights ? static_cast<T>(a.weights[r]) : T(1));
    if (a.mode == CrossEntropyMode::nll) {
      const T lse =
          use_saved ? static_cast<T>(a.lse[r]) : row_lse(row, a.vocab, int64_t{-1}, scratch);
      for (int64_t c = threadIdx.x; c < a.vocab; c += blockDim.x)
        drow[c] = g * dev_exp(row[c] - lse) - (c == t ? g : T(0));
    } else {
      UnlikelihoodStats<T> s = unlikelihood_stats(row, a.vocab, t, a.c, scratch);
      const T k = g * static_cast<T>(a.c) * dev_exp(row[t] - s.lse);
      const bool zero = s.log_u == dev_neg_inf<T>();
      __syncthreads();  // every thread has read row[t]: dlogits may be the logits (in place)
      for (int64_t c = threadIdx.x; c < a.vocab; c += blockDim.x) {
        T d;
        if (zero) {
          d = T(0);
        } else if (c == t) {
          d = s.lse_o == dev_neg_inf<T>() ? T(0) : k * dev_exp(s.lse_o - s.log_u);
        } else {
          d = -k * dev_exp(row[c] - s.log_u);
        }
        drow[c] = d;
      }
    }
  }
}

// The nll loss and its dlogits in one pass per row (cross_entropy_fused): the row is read once
// with an online max and sum (each thread rescales its partial sum as its max grows; the block
// combines them), kept in shared memory when `cached` (vocab values fit), and its dlogits written
// from there: one read and one write of the logits instead of the separate kernels' three reads
// and one write. In place (dlogits == logits) is safe: every thread has read the row's target
// logit and its own elements before the first write.
template <typename T>
__global__ void cross_entropy_fused_kernel(CrossEntropyBackwardArgs args, bool cached) {
  LETHE_DYNAMIC_SHARED(smem_raw);
  T* cache = cached ? reinterpret_cast<T*>(smem_raw) : nullptr;
  __shared__ T scratch[32];
  const CrossEntropyArgs& a = args.fwd;
  const T* logits = static_cast<const T*>(a.logits);
  const T* dloss = static_cast<const T*>(args.dloss);
  T* dlogits = static_cast<T*>(args.dlogits);
  T* loss = static_cast<T*>(a.loss);
  for (int64_t r = blockIdx.x; r < a.rows; r += gridDim.x) {
    const T* row = logits + r * a.vocab;
    T* drow = dlogits + r * a.vocab;
    const int64_t t = a.targets[r];
    const bool valid = t != a.ignore_index;
    const bool in_range = t >= 0 && t < a.vocab;  // the op validates; never read out of bounds
    const T xt = valid && in_range ? row[t] : T(0);
    T m = dev_neg_inf<T>(), s = 0;
    for (int64_t c = threadIdx.x; c < a.vocab; c += blockDim.x) {
      const T x = row[c];
      if (cache) cache[c] = x;
      if (x == dev_neg_inf<T>()) continue;  // contributes nothing (and exp(-inf + inf) is NaN)
      if (x > m) {
        s = s * dev_exp(m - x) + T(1);
        m = x;
      } else {
        s += dev_exp(x - m);
      }
    }
    const T mx = block_max(m, scratch);
    T lse = mx;  // ±inf: as row_lse (a +inf logit makes the row's lse +inf)
    if (!isinf(mx)) lse = mx + dev_log(block_sum(s * dev_exp(m - mx), scratch));
    // block_max/block_sum end with a barrier: every thread has read its elements and xt.
    const T w = a.weights ? static_cast<T>(a.weights[r]) : T(1);
    if (threadIdx.x == 0) {
      if (a.lse) a.lse[r] = static_cast<float>(lse);
      if (loss) loss[r] = valid ? w * (in_range ? lse - xt : static_cast<T>(NAN)) : T(0);
    }
    const T* src = cache ? cache : row;
    if (!valid || !in_range) {
      for (int64_t c = threadIdx.x; c < a.vocab; c += blockDim.x) drow[c] = T(0);
    } else {
      const T g = dloss[r] * w;
      for (int64_t c = threadIdx.x; c < a.vocab; c += blockDim.x)
        drow[c] = g * dev_exp(src[c] - lse) - (c == t ? g : T(0));
    }
    __syncthreads();  // the next row overwrites the cache
  }
}

// KL(p || q) with p = softmax(ref), q = softmax(x): sum_j p_j (log p_j - log q_j); terms with
// p_j = 0 are skipped (also -inf reference logits: no 0 * inf).
template <typename T>
__device__ T row_kl(const T* ref, const T* x, int64_t cols, T lse_p, T lse_q, T* scratch) {
  T acc = 0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    T logp = ref[c] - lse_p;
    T p = dev_exp(logp);
    if (p != T(0)) acc += p * (logp - (x[c] - lse_q));
  }
  return block_sum(acc, scratch);
}

template <typename T>
__global__ void kl_forward_kernel(int64_t rows, int64_t cols, const T* ref, const T* x, T* out) {
  __shared__ T scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* rr = ref + r * cols;
    const T* xr = x + r * cols;
    T lse_p = row_lse(rr, cols, int64_t{-1}, scratch);
    T lse_q = row_lse(xr, cols, int64_t{-1}, scratch);
    T kl = row_kl(rr, xr, cols, lse_p, lse_q, scratch);
    if (threadIdx.x == 0) out[r] = kl;
  }
}

// d/dx_j = dout (q_j - p_j); d/dref_j = dout p_j (log p_j - log q_j - KL).
template <typename T>
__global__ void kl_backward_kernel(int64_t rows, int64_t cols, const T* ref, const T* x,
                                   const T* dout, T* dx, T* dref) {
  __shared__ T scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* rr = ref + r * cols;
    const T* xr = x + r * cols;
    T lse_p = row_lse(rr, cols, int64_t{-1}, scratch);
    T lse_q = row_lse(xr, cols, int64_t{-1}, scratch);
    T kl = dref ? row_kl(rr, xr, cols, lse_p, lse_q, scratch) : T(0);
    T g = dout[r];
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      T logp = rr[c] - lse_p, logq = xr[c] - lse_q;
      T p = dev_exp(logp);
      if (dx) dx[r * cols + c] = g * (dev_exp(logq) - p);
      if (dref) dref[r * cols + c] = p == T(0) ? T(0) : g * p * (logp - logq - kl);
    }
  }
}

int loss_threads(int64_t cols) {
  int64_t t = (cols + 31) / 32 * 32;
  return static_cast<int>(t < 32 ? 32 : (t > 512 ? 512 : t));
}

}  // namespace

void CudaBackend::embedding_forward(DType dtype, int64_t n, int64_t dim, const int64_t* ids,
                                    const void* table, void* out) {
  if (n <= 0 || dim <= 0) return;
  unsigned g = grid_for(n * dim);
  switch (dtype_size(dtype)) {
    case 8:
      launch("embedding_forward", embedding_forward_kernel<uint64_t>, g, kThreads, 0, n, dim, ids,
             static_cast<const uint64_t*>(table), static_cast<uint64_t*>(out));
      break;
    case 4:
      launch("embedding_forward", embedding_forward_kernel<uint32_t>, g, kThreads, 0, n, dim, ids,
             static_cast<const uint32_t*>(table), static_cast<uint32_t*>(out));
      break;
    case 2:
      launch("embedding_forward", embedding_forward_kernel<uint16_t>, g, kThreads, 0, n, dim, ids,
             static_cast<const uint16_t*>(table), static_cast<uint16_t*>(out));
      break;
    default:
      launch("embedding_forward", embedding_forward_kernel<uint8_t>, g, kThreads, 0, n, dim, ids,
             static_cast<const uint8_t*>(table), static_cast<uint8_t*>(out));
  }
}

void CudaBackend::embedding_backward(DType dtype, int64_t n, int64_t dim, const int64_t* ids,
                                     const void* dout, void* dtable, int64_t padding_idx) {
  cuda_dispatch_float(dtype, "embedding_backward", [&](auto tag) {
    using T = decltype(tag);
    if (n <= 0 || dim <= 0) return;
    launch("embedding_backward", embedding_backward_kernel<T>, grid_for(n * dim), kThreads, 0, n,
           dim, ids, static_cast<const T*>(dout), static_cast<T*>(dtable), padding_idx);
  });
}

void CudaBackend::cross_entropy_forward(const CrossEntropyArgs& args) {
  LETHE_CHECK(args.rows >= 0 && args.vocab >= 0, "cross_entropy_forward: negative size");
  LETHE_CHECK(args.vocab > 0 || args.rows == 0, "cross_entropy_forward: vocab is 0");
  cuda_dispatch_float(args.dtype, "cross_entropy_forward", [&](auto tag) {
    using T = decltype(tag);
    if (args.rows == 0) return;
    launch("cross_entropy_forward", cross_entropy_forward_kernel<T>, row_blocks(args.rows),
           loss_threads(args.vocab), 0, args);
  });
}

void CudaBackend::cross_entropy_backward(const CrossEntropyBackwardArgs& args) {
  const CrossEntropyArgs& f = args.fwd;
  LETHE_CHECK(f.rows >= 0 && f.vocab >= 0, "cross_entropy_backward: negative size");
  cuda_dispatch_float(f.dtype, "cross_entropy_backward", [&](auto tag) {
    using T = decltype(tag);
    if (f.rows == 0 || f.vocab == 0) return;
    launch("cross_entropy_backward", cross_entropy_backward_kernel<T>, row_blocks(f.rows),
           loss_threads(f.vocab), 0, args);
  });
}

void CudaBackend::cross_entropy_fused(const CrossEntropyBackwardArgs& args) {
  const CrossEntropyArgs& f = args.fwd;
  if (f.mode != CrossEntropyMode::nll) {  // unlikelihood: the two kernels
    cross_entropy_forward(f);
    cross_entropy_backward(args);
    return;
  }
  LETHE_CHECK(f.rows >= 0 && f.vocab >= 0, "cross_entropy_fused: negative size");
  LETHE_CHECK(f.vocab > 0 || f.rows == 0, "cross_entropy_fused: vocab is 0");
  cuda_dispatch_float(f.dtype, "cross_entropy_fused", [&](auto tag) {
    using T = decltype(tag);
    if (f.rows == 0) return;
    const size_t bytes = static_cast<size_t>(f.vocab) * sizeof(T);
    const bool cached = bytes <= props_.sharedMemPerBlockOptin;
    if (cached && bytes > 48 * 1024)
      LETHE_CUDA_CHECK(cudaFuncSetAttribute(cross_entropy_fused_kernel<T>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(bytes)));
    launch("cross_entropy_fused", cross_entropy_fused_kernel<T>, row_blocks(f.rows),
           loss_threads(f.vocab), cached ? bytes : 0, args, cached);
  });
}

void CudaBackend::kl_div_forward(DType dtype, int64_t rows, int64_t vocab, const void* ref_logits,
                                 const void* logits, void* out) {
  cuda_dispatch_float(dtype, "kl_div_forward", [&](auto tag) {
    using T = decltype(tag);
    if (rows <= 0) return;
    launch("kl_div_forward", kl_forward_kernel<T>, row_blocks(rows), loss_threads(vocab), 0, rows,
           vocab, static_cast<const T*>(ref_logits), static_cast<const T*>(logits),
           static_cast<T*>(out));
  });
}

void CudaBackend::kl_div_backward(DType dtype, int64_t rows, int64_t vocab, const void* ref_logits,
                                  const void* logits, const void* dout, void* dlogits, void* dref) {
  cuda_dispatch_float(dtype, "kl_div_backward", [&](auto tag) {
    using T = decltype(tag);
    if (rows <= 0 || vocab <= 0 || (!dlogits && !dref)) return;
    launch("kl_div_backward", kl_backward_kernel<T>, row_blocks(rows), loss_threads(vocab), 0, rows,
           vocab, static_cast<const T*>(ref_logits), static_cast<const T*>(logits),
           static_cast<const T*>(dout), static_cast<T*>(dlogits), static_cast<T*>(dref));
  });
}

}  // namespace lethe::kernels
