// CUDA attention, forward and backward. The backend's primitives run the tiled flash kernels
// (flash_attention.cu) for head dims up to kMaxHeadDim; this file holds the simple per-row
// kernels — one block per query row (forward, dq) or key row (dk, dv), a warp per dot product,
// rows of scores in shared memory — as the fallback for larger head dims and as the unfused
// reference the flash kernels are tested against (cuda_set_simple_attention). Dropout on the
// probabilities (AttentionArgs::dropout) is drawn where each probability is formed, in both passes.
#include <atomic>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_debug.h"

namespace lethe::kernels {

namespace {

std::atomic<bool> g_simple_attention{false};

bool use_flash(const AttentionArgs& a) {
  return !g_simple_attention.load() && flash_attention_supported(a);
}

constexpr int kAttnThreads = 128;

// Whether query i (of Tq) in batch b may attend key j (of Tk).
__device__ __forceinline__ bool visible(const AttentionArgs& a, int64_t b, int64_t i, int64_t j) {
  if (a.causal && j > i + a.kv_len - a.q_len) return false;
  return a.key_mask == nullptr || a.key_mask[b * a.kv_len + j] != 0;
}

template <typename T>
__device__ __forceinline__ T warp_dot(const T* x, const T* y, int64_t n) {
  T acc = 0;
  for (int64_t d = threadIdx.x & 31; d < n; d += 32) acc += x[d] * y[d];
  acc = warp_sum(acc);
  return __shfl_sync(0xffffffffu, acc, 0);
}

// Block per (b, h, i): scores s_j in shared memory, lse, out_i = sum_j p_j v_j.
template <typename T>
__global__ void attention_forward_kernel(AttentionArgs a) {
  LETHE_DYNAMIC_SHARED(smem_raw);
  T* scores = reinterpret_cast<T*>(smem_raw);  // [Tk]
  __shared__ T scratch[32];
  const int64_t Tq = a.q_len, Tk = a.kv_len, D = a.head_dim;
  const int64_t row = blockIdx.x;  // (b * H + h) * Tq + i
  const int64_t i = row % Tq, bh = row / Tq, b = bh / a.heads;
  const T* q = static_cast<const T*>(a.q) + row * D;
  const int64_t kvs = a.kv_stride ? a.kv_stride : Tk * D;  // (b, h) matrices of k and v
  const T* k = static_cast<const T*>(a.k) + kv_matrix(a, bh) * kvs;
  const T* v = static_cast<const T*>(a.v) + kv_matrix(a, bh) * kvs;
  T* out = static_cast<T*>(a.out) + row * D;
  const T scale = static_cast<T>(a.scale);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;

  for (int64_t j = warp; j < Tk; j += warps) {
    T s = visible(a, b, i, j) ? scale * warp_dot(q, k + j * D, D) : dev_neg_inf<T>();
    if (lane == 0) scores[j] = s;
  }
  __syncthreads();
  T m = dev_neg_inf<T>();
  for (int64_t j = threadIdx.x; j < Tk; j += blockDim.x) m = fmax(m, scores[j]);
  m = block_max(m, scratch);
  if (m == dev_neg_inf<T>()) {  // no visible key: zero output, lse = -inf
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) out[d] = T(0);
    if (threadIdx.x == 0 && a.lse) a.lse[row] = -INFINITY;
    return;
  }
  T sum = 0;
  for (int64_t j = threadIdx.x; j < Tk; j += blockDim.x) {
    T p = dev_exp(scores[j] - m);  // exp(-inf) = 0 for masked keys
    scores[j] = p * drop_factor<T>(a, row, j);
    sum += p;
  }
  sum = block_sum(sum, scratch);  // ends with a barrier: every p is in shared memory
  T inv = T(1) / sum;
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    T acc = 0;
    for (int64_t j = 0; j < Tk; ++j) acc += scores[j] * v[j * D + d];
    out[d] = acc * inv;
  }
  if (threadIdx.x == 0 && a.lse) a.lse[row] = static_cast<float>(m + dev_log(sum));
}

// Block per query row: delta_i = dO_i . O_i; P_ij and dS_ij = P_ij (dO_i . v_j - delta_i);
// dq_i = scale * sum_j dS_ij k_j. delta is saved for the key-side kernel.
template <typename T>
__global__ void attention_backward_dq_kernel(AttentionBackwardArgs args, T* delta_out) {
  LETHE_DYNAMIC_SHARED(smem_raw);
  T* ds = reinterpret_cast<T*>(smem_raw);  // [Tk]
  __shared__ T scratch[32];
  const AttentionArgs& a = args.fwd;
  const int64_t Tq = a.q_len, Tk = a.kv_len, D = a.head_dim;
  const int64_t row = blockIdx.x;
  const int64_t i = row % Tq, bh = row / Tq, b = bh / a.heads;
  const T* q = static_cast<const T*>(a.q) + row * D;
  const T* k = static_cast<const T*>(a.k) + kv_matrix(a, bh) * Tk * D;
  const T* v = static_cast<const T*>(a.v) + kv_matrix(a, bh) * Tk * D;
  const T* o = static_cast<const T*>(a.out) + row * D;
  const T* dout = static_cast<const T*>(args.dout) + row * D;
  T* dq = static_cast<T*>(args.dq) + row * D;
  const T scale = static_cast<T>(a.scale);
  const float lse = a.lse[row];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;

  T part = 0;
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) part += dout[d] * o[d];
  T delta = block_sum(part, scratch);
  if (threadIdx.x == 0) delta_out[row] = delta;

  const bool any = lse != -INFINITY;
  for (int64_t j = warp; j < Tk; j += warps) {
    T value = 0;
    if (any && visible(a, b, i, j)) {
      T p = dev_exp(scale * warp_dot(q, k + j * D, D) - static_cast<T>(lse));
      value = p * (drop_factor<T>(a, row, j) * warp_dot(dout, v + j * D, D) - delta);
    }
    if (lane == 0) ds[j] = value;
  }
  __syncthreads();
  if (dq) {
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
      T acc = 0;
      for (int64_t j = 0; j < Tk; ++j) acc += ds[j] * k[j * D + d];
      dq[d] = scale * acc;
    }
  }
}

// Block per key row j of a (batch, kv head): dv_j = sum_i P_ij dO_i, dk_j = scale * sum_i dS_ij
// q_i over the queries i of every query head of the kv head's group, in head order.
template <typename T>
__global__ void attention_backward_dkv_kernel(AttentionBackwardArgs args, const T* delta) {
  LETHE_DYNAMIC_SHARED(smem_raw);
  T* p_col = reinterpret_cast<T*>(smem_raw);  // [Tq]
  T* ds_col = p_col + args.fwd.q_len;         // [Tq]
  const AttentionArgs& a = args.fwd;
  const int64_t Tq = a.q_len, Tk = a.kv_len, D = a.head_dim;
  const int64_t key_row = blockIdx.x;  // (b * KVH + kvh) * Tk + j
  const int64_t j = key_row % Tk, bkv = key_row / Tk, kvh = kv_heads_of(a), group = group_of(a);
  const int64_t b = bkv / kvh;
  const T* kj = static_cast<const T*>(a.k) + key_row * D;
  const T* vj = static_cast<const T*>(a.v) + key_row * D;
  const T scale = static_cast<T>(a.scale);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  // Thread t owns columns d = t, t + blockDim.x, ... (at most kMaxColumns of them).
  constexpr int kMaxColumns = 8;
  T acc_v[kMaxColumns], acc_k[kMaxColumns];
  for (int c = 0; c < kMaxColumns; ++c) acc_v[c] = acc_k[c] = 0;
  for (int64_t g = 0; g < group; ++g) {
    const int64_t bh = b * a.heads + (bkv % kvh) * group + g;
    const T* q = static_cast<const T*>(a.q) + bh * Tq * D;
    const T* dout = static_cast<const T*>(args.dout) + bh * Tq * D;
    const float* lse = a.lse + bh * Tq;
    const T* dl = delta + bh * Tq;
    __syncthreads();  // the previous head's columns are no longer read
    for (int64_t i = warp; i < Tq; i += warps) {
      T p = 0, s = 0;
      if (lse[i] != -INFINITY && visible(a, b, i, j)) {
        p = dev_exp(scale * warp_dot(q + i * D, kj, D) - static_cast<T>(lse[i]));
        const T m = drop_factor<T>(a, bh * Tq + i, j);
        s = p * (m * warp_dot(dout + i * D, vj, D) - dl[i]);
        p *= m;
      }
      if (lane == 0) {
        p_col[i] = p;
        ds_col[i] = s;
      }
    }
    __syncthreads();
    for (int c = 0; c < kMaxColumns; ++c) {
      const int64_t d = threadIdx.x + static_cast<int64_t>(c) * blockDim.x;
      if (d >= D) break;
      for (int64_t i = 0; i < Tq; ++i) {
        acc_v[c] += p_col[i] * dout[i * D + d];
        acc_k[c] += ds_col[i] * q[i * D + d];
      }
    }
  }
  for (int c = 0; c < kMaxColumns; ++c) {
    const int64_t d = threadIdx.x + static_cast<int64_t>(c) * blockDim.x;
    if (d >= D) break;
    if (args.dv) static_cast<T*>(args.dv)[key_row * D + d] = acc_v[c];
    if (args.dk) static_cast<T*>(args.dk)[key_row * D + d] = scale * acc_k[c];
  }
}

void check_attention(const AttentionArgs& a, const char* what) {
  LETHE_CHECK(a.batch >= 0 && a.heads >= 0 && a.q_len >= 0 && a.kv_len >= 0 && a.head_dim >= 0,
              what, ": negative size");
  LETHE_CHECK(a.dropout >= 0.0 && a.dropout < 1.0, what, ": dropout must be in [0, 1), got ",
              a.dropout);
  LETHE_CHECK(a.batch * a.heads * (a.q_len > a.kv_len ? a.q_len : a.kv_len) < (int64_t{1} << 31),
              what, ": too many rows for the grid");
  LETHE_CHECK(a.kv_heads == 0 || (a.kv_heads > 0 && a.heads % a.kv_heads == 0), what, ": ", a.heads,
              " query heads are not a multiple of kv_heads ", a.kv_heads);
  LETHE_CHECK(a.head_dim <= 8 * kAttnThreads, what, ": head dim ", a.head_dim,
              " exceeds the simple kernels' ", 8 * kAttnThreads);
}

// Raises a kernel's dynamic shared-memory limit when a row of scores needs more than 48 KB.
template <typename Kernel>
void reserve_shared(Kernel kernel, size_t bytes, const cudaDeviceProp& props, const char* what) {
  LETHE_CHECK(bytes <= props.sharedMemPerBlockOptin, what, ": needs ", bytes,
              " bytes of shared memory per block for one row of scores (the device has ",
              props.sharedMemPerBlockOptin, "); sequence too long for the simple CUDA kernel");
  if (bytes > 48 * 1024)
    LETHE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(bytes)));
}

}  // namespace

void cuda_set_simple_attention(bool on) {
  g_simple_attention = on;
}

void CudaBackend::attention_forward(const AttentionArgs& args) {
  check_attention(args, "attention_forward");
  if (use_flash(args)) {
    flash_attention_forward(*this, args);
    return;
  }
  cuda_dispatch_float(args.dtype, "attention_forward", [&](auto tag) {
    using T = decltype(tag);
    int64_t rows = args.batch * args.heads * args.q_len;
    if (rows == 0 || args.head_dim == 0) {
      if (rows && args.lse) fill(DType::f32, args.lse, rows, -INFINITY);
      return;
    }
    size_t shmem = static_cast<size_t>(args.kv_len > 0 ? args.kv_len : 1) * sizeof(T);
    reserve_shared(attention_forward_kernel<T>, shmem, props_, "attention_forward");
    launch("attention_forward", attention_forward_kernel<T>, static_cast<unsigned>(rows),
           kAttnThreads, shmem, args);
  });
}

void CudaBackend::attention_backward(const AttentionBackwardArgs& args) {
  const AttentionArgs& f = args.fwd;
  check_attention(f, "attention_backward");
  LETHE_CHECK(f.lse != nullptr, "attention_backward: the forward's lse is required");
  LETHE_CHECK(f.kv_stride == 0 || f.kv_stride == f.kv_len * f.head_dim,
              "attention_backward: k and v must be contiguous (kv_stride ", f.kv_stride, ")");
  if (use_flash(f)) {
    flash_attention_backward(*this, args);
    return;
  }
  cuda_dispatch_float(f.dtype, "attention_backward", [&](auto tag) {
    using T = decltype(tag);
    int64_t q_rows = f.batch * f.heads * f.q_len, k_rows = f.batch * kv_heads_of(f) * f.kv_len;
    if (f.head_dim == 0) return;
    DeviceScratch delta(*this, static_cast<size_t>(q_rows > 0 ? q_rows : 1) * sizeof(T));
    if (q_rows > 0) {
      size_t shmem = static_cast<size_t>(f.kv_len > 0 ? f.kv_len : 1) * sizeof(T);
      reserve_shared(attention_backward_dq_kernel<T>, shmem, props_, "attention_backward");
      launch("attention_backward (dq)", attention_backward_dq_kernel<T>,
             static_cast<unsigned>(q_rows), kAttnThreads, shmem, args, delta.as<T>());
    }
    if (k_rows > 0 && (args.dk || args.dv)) {
      size_t shmem = 2 * static_cast<size_t>(f.q_len > 0 ? f.q_len : 1) * sizeof(T);
      reserve_shared(attention_backward_dkv_kernel<T>, shmem, props_, "attention_backward");
      launch("attention_backward (dk, dv)", attention_backward_dkv_kernel<T>,
             static_cast<unsigned>(k_rows), kAttnThreads, shmem, args, delta.as<T>());
    }
  });
}

}  // namespace lethe::kernels
