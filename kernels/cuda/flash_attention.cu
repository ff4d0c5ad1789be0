// Flash attention, forward and backward (FlashAttention-2's schedule; f32/f64 on CUDA cores, the
// forward's products on tensor cores in bf16 compute):
//   out = softmax(scale · q kᵀ + mask) v per (batch, head), lse = the row's log-sum-exp,
// computed tile by tile — a block holds kBr query rows and walks the key tiles of kBc keys with an
// online softmax (running max and sum, the output rescaled as the max grows), so no T×T score
// matrix exists anywhere, in global or shared memory beyond one kBr × kBc tile. The backward
// recomputes each tile's probabilities from the saved lse: one kernel per key tile accumulates dk
// and dv over the query tiles, one per query tile accumulates dq over the key tiles — every
// gradient written once, in a fixed order (no atomics: reproducible). Causal and key-padding
// masks, Tq ≠ Tk (queries are the last Tq positions), kv_stride (a KV cache read in place,
// forward only), head dims up to kMaxHeadDim (OPT 64/80/128, Llama 128), dropout on the
// probabilities (the counter-based mask drawn per element in each pass, none stored; the
// softmax's sum and lse stay the undropped ones). Tiles a causal mask
// hides entirely are skipped. Grouped-query attention (kv_heads < heads): query head h reads kv
// head h / group, and the dk/dv kernels run per kv head over its group's query heads. attention.cu
// keeps the simple per-row kernels as the reference and the fallback for larger head dims.
#include <cuda_bf16.h>

#include <type_traits>

#include "kernels/cuda/cuda_common.cuh"

#ifdef LETHE_CUDA_EMULATED
#include "kernels/cuda/emu/wmma.h"
#else
#include <mma.h>
#endif

namespace lethe::kernels {

namespace {

constexpr int kBr = 32;                           // query rows per tile
constexpr int kBc = 32;                           // keys per tile
constexpr int kFlashThreads = 128;                // 4 warps
constexpr int kRowThreads = kFlashThreads / kBr;  // threads sharing one query (or key) row: 4
constexpr int kDPer = kMaxHeadDim / kRowThreads;  // head-dim columns each of them owns
constexpr int kPad = kBc + 1;                     // a tile row's stride (no bank conflicts)

__device__ __forceinline__ bool sees(const AttentionArgs& a, int64_t b, int64_t i, int64_t j) {
  if (a.causal && j > i + a.kv_len - a.q_len) return false;
  return a.key_mask == nullptr || a.key_mask[b * a.kv_len + j] != 0;
}

// The keys a query tile [q0, q0 + kBr) may see: [0, end). Causal: past the tile's last query's
// position nothing is visible.
__device__ __forceinline__ int64_t key_end(const AttentionArgs& a, int64_t q0) {
  if (!a.causal) return a.kv_len;
  const int64_t last = q0 + kBr - 1 + a.kv_len - a.q_len;  // position of the tile's last query
  return last < 0 ? 0 : (last + 1 < a.kv_len ? last + 1 : a.kv_len);
}

// The first query a key tile [k0, k0 + kBc) is visible to (causal), else 0.
__device__ __forceinline__ int64_t query_begin(const AttentionArgs& a, int64_t k0) {
  if (!a.causal) return 0;
  const int64_t first = k0 - (a.kv_len - a.q_len);
  return first < 0 ? 0 : first;
}

// rows × D elements of a row-major matrix into shared memory, zeros past `valid` rows.
template <typename T>
__device__ __forceinline__ void load_tile(T* dst, const T* src, int64_t rows, int64_t valid,
                                          int64_t D) {
  for (int64_t idx = threadIdx.x; idx < rows * D; idx += blockDim.x)
    dst[idx] = idx / D < valid ? src[idx] : T(0);
}

template <typename T>
__device__ __forceinline__ T dot_row(const T* x, const T* y, int64_t D) {
  T acc = 0;
  for (int64_t d = 0; d < D; ++d) acc += x[d] * y[d];
  return acc;
}

// Grid (query tiles, batch · heads). Thread t owns query row t / kRowThreads of the tile and the
// head-dim columns d ≡ t (mod kRowThreads) of its output.
template <typename T>
__global__ void flash_forward_kernel(AttentionArgs a) {
  LETHE_DYNAMIC_SHARED(smem_raw);
  const int64_t Tq = a.q_len, Tk = a.kv_len, D = a.head_dim;
  T* sq = reinterpret_cast<T*>(smem_raw);  // [kBr, D]
  T* sk = sq + kBr * D;                    // [kBc, D]
  T* sv = sk + kBc * D;                    // [kBc, D]
  T* ss = sv + kBc * D;                    // [kBr, kPad] scores, then probabilities
  const int64_t bh = blockIdx.y, b = bh / a.heads;
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * kBr;
  const int r = threadIdx.x / kRowThreads, part = threadIdx.x % kRowThreads;
  const int64_t i = q0 + r;
  const bool row_ok = i < Tq;
  const int64_t kvs = a.kv_stride ? a.kv_stride : Tk * D;
  const T* q = static_cast<const T*>(a.q) + (bh * Tq + q0) * D;
  const T* k = static_cast<const T*>(a.k) + kv_matrix(a, bh) * kvs;
  const T* v = static_cast<const T*>(a.v) + kv_matrix(a, bh) * kvs;
  const T scale = static_cast<T>(a.scale);

  load_tile(sq, q, kBr, Tq - q0, D);
  T acc[kDPer];
  for (int c = 0; c < kDPer; ++c) acc[c] = 0;
  T m = dev_neg_inf<T>(), l = 0;
  const int64_t end = key_end(a, q0);
  for (int64_t k0 = 0; k0 < end; k0 += kBc) {
    __syncthreads();  // the previous tile's k, v and probabilities are no longer read
    load_tile(sk, k + k0 * D, kBc, Tk - k0, D);
    load_tile(sv, v + k0 * D, kBc, Tk - k0, D);
    __syncthreads();
    for (int c = part; c < kBc; c += kRowThreads) {
      const int64_t j = k0 + c;
      T s = dev_neg_inf<T>();
      if (row_ok && j < Tk && sees(a, b, i, j)) s = scale * dot_row(sq + r * D, sk + c * D, D);
      ss[r * kPad + c] = s;
    }
    __syncthreads();
    // The online softmax of row r (each of its threads computes the same numbers).
    T tile_max = dev_neg_inf<T>();
    for (int c = 0; c < kBc; ++c) tile_max = fmax(tile_max, ss[r * kPad + c]);
    const T m_new = fmax(m, tile_max);
    if (m_new == dev_neg_inf<T>()) continue;  // nothing visible to this row yet
    const T alpha = dev_exp(m - m_new);       // 0 while m is -inf
    l *= alpha;
    for (int c = 0; c < kDPer; ++c) acc[c] *= alpha;
    for (int c = 0; c < kBc; ++c) {
      const T p = dev_exp(ss[r * kPad + c] - m_new);  // masked: exp(-inf) = 0
      if (p == T(0)) continue;
      l += p;  // the softmax's sum is the undropped one's
      const T pm = p * drop_factor<T>(a, bh * Tq + i, k0 + c);
      LETHE_UNROLL
      for (int n = 0; n < kDPer; ++n) {
        const int64_t d = part + n * kRowThreads;
        if (d < D) acc[n] += pm * sv[c * D + d];
      }
    }
    m = m_new;
  }
  if (!row_ok) return;
  T* out = static_cast<T*>(a.out) + (bh * Tq + i) * D;
  const bool any = l > T(0);
  LETHE_UNROLL
  for (int n = 0; n < kDPer; ++n) {
    const int64_t d = part + n * kRowThreads;
    if (d < D) out[d] = any ? acc[n] / l : T(0);
  }
  if (part == 0 && a.lse) a.lse[bh * Tq + i] = any ? static_cast<float>(m + dev_log(l)) : -INFINITY;
}

// delta_i = dO_i · O_i, one thread per query row.
template <typename T>
__global__ void flash_delta_kernel(int64_t rows, int64_t D, const T* out, const T* dout, T* delta) {
  for (int64_t row = global_index(); row < rows; row += global_stride())
    delta[row] = dot_row(out + row * D, dout + row * D, D);
}

// lse and delta of the query rows [q0, q0 + kBr) of one (batch, head) into shared memory
// (−inf and 0 past the end), from the row index `first` = (b · H + h) · Tq + q0.
template <typename T>
__device__ __forceinline__ void load_row_stats(T* slse, T* sdelta, const float* lse, const T* delta,
                                               int64_t first, int64_t valid) {
  for (int rr = threadIdx.x; rr < kBr; rr += blockDim.x) {
    const bool ok = rr < valid;
    slse[rr] = ok ? static_cast<T>(lse[first + rr]) : dev_neg_inf<T>();
    sdelta[rr] = ok ? delta[first + rr] : T(0);
  }
}

// One kBr × kBc tile of the backward: p_ij = exp(scale · q_i · k_j − lse_i), with the dropout
// factor m_ij (1 without dropout) sp_ij = p_ij m_ij (what the output read) and
// dS_ij = p_ij (m_ij dO_i · v_j − delta_i); 0 where j is hidden from i or i sees no key. sp may be
// null (dq needs dS only).
template <typename T>
__device__ __forceinline__ void backward_tile(const AttentionArgs& a, int64_t bh, int64_t q0,
                                              int64_t k0, const T* sq, const T* sk, const T* sdo,
                                              const T* sv, const T* slse, const T* sdelta, T* sp,
                                              T* sds) {
  const int64_t D = a.head_dim;
  const T scale = static_cast<T>(a.scale);
  for (int idx = threadIdx.x; idx < kBr * kBc; idx += blockDim.x) {
    const int rr = idx / kBc, cc = idx % kBc;
    const int64_t i = q0 + rr, j = k0 + cc;
    T p = 0, ds = 0;
    if (i < a.q_len && j < a.kv_len && slse[rr] != dev_neg_inf<T>() &&
        sees(a, bh / a.heads, i, j)) {
      p = dev_exp(scale * dot_row(sq + rr * D, sk + cc * D, D) - slse[rr]);
      const T m = drop_factor<T>(a, bh * a.q_len + i, j);
      ds = p * (m * dot_row(sdo + rr * D, sv + cc * D, D) - sdelta[rr]);
      p *= m;
    }
    if (sp) sp[rr * kPad + cc] = p;
    sds[rr * kPad + cc] = ds;
  }
}

// Grid (key tiles, batch · kv heads). Thread t owns key row t / kRowThreads of the tile and its
// head-dim columns d ≡ t (mod kRowThreads) of dk and dv, accumulated over every query tile of
// every query head that reads the kv head.
template <typename T>
__global__ void flash_backward_dkv_kernel(AttentionBackwardArgs args, const T* delta) {
  LETHE_DYNAMIC_SHARED(smem_raw);
  const AttentionArgs& a = args.fwd;
  const int64_t Tq = a.q_len, Tk = a.kv_len, D = a.head_dim;
  T* sk = reinterpret_cast<T*>(smem_raw);  // [kBc, D]
  T* sv = sk + kBc * D;                    // [kBc, D]
  T* sq = sv + kBc * D;                    // [kBr, D]
  T* sdo = sq + kBr * D;                   // [kBr, D]
  T* sp = sdo + kBr * D;                   // [kBr, kPad] probabilities
  T* sds = sp + kBr * kPad;                // [kBr, kPad] dS
  T* slse = sds + kBr * kPad;              // [kBr]
  T* sdelta = slse + kBr;                  // [kBr]
  const int64_t bkv = blockIdx.y, kvh = kv_heads_of(a), group = group_of(a);
  const int64_t k0 = static_cast<int64_t>(blockIdx.x) * kBc;
  const int c = threadIdx.x / kRowThreads, part = threadIdx.x % kRowThreads;
  const T scale = static_cast<T>(a.scale);

  load_tile(sk, static_cast<const T*>(a.k) + (bkv * Tk + k0) * D, kBc, Tk - k0, D);
  load_tile(sv, static_cast<const T*>(a.v) + (bkv * Tk + k0) * D, kBc, Tk - k0, D);
  T dk[kDPer], dv[kDPer];
  for (int n = 0; n < kDPer; ++n) dk[n] = dv[n] = 0;
  // Every query head of the kv head's group, in order (grouped-query attention).
  for (int64_t g = 0; g < group; ++g) {
    const int64_t bh = (bkv / kvh) * a.heads + (bkv % kvh) * group + g;
    const T* q = static_cast<const T*>(a.q) + bh * Tq * D;
    const T* dout = static_cast<const T*>(args.dout) + bh * Tq * D;
    for (int64_t q0 = query_begin(a, k0) / kBr * kBr; q0 < Tq; q0 += kBr) {
      __syncthreads();
      load_tile(sq, q + q0 * D, kBr, Tq - q0, D);
      load_tile(sdo, dout + q0 * D, kBr, Tq - q0, D);
      load_row_stats(slse, sdelta, a.lse, delta, bh * Tq + q0, Tq - q0);
      __syncthreads();
      backward_tile(a, bh, q0, k0, sq, sk, sdo, sv, slse, sdelta, sp, sds);
      __syncthreads();
      for (int rr = 0; rr < kBr; ++rr) {
        const T p = sp[rr * kPad + c], ds = sds[rr * kPad + c];
        LETHE_UNROLL
        for (int n = 0; n < kDPer; ++n) {
          const int64_t d = part + n * kRowThreads;
          if (d < D) {
            dv[n] += p * sdo[rr * D + d];
            dk[n] += ds * sq[rr * D + d];
          }
        }
      }
    }
  }
  const int64_t j = k0 + c;
  if (j >= Tk) return;
  T* gdk = args.dk ? static_cast<T*>(args.dk) + (bkv * Tk + j) * D : nullptr;
  T* gdv = args.dv ? static_cast<T*>(args.dv) + (bkv * Tk + j) * D : nullptr;
  LETHE_UNROLL
  for (int n = 0; n < kDPer; ++n) {
    const int64_t d = part + n * kRowThreads;
    if (d >= D) continue;
    if (gdk) gdk[d] = scale * dk[n];
    if (gdv) gdv[d] = dv[n];
  }
}

// Grid (query tiles, batch · heads). Thread t owns query row t / kRowThreads and its columns
// d ≡ t (mod kRowThreads) of dq, accumulated over the key tiles the row may see.
template <typename T>
__global__ void flash_backward_dq_kernel(AttentionBackwardArgs args, const T* delta) {
  LETHE_DYNAMIC_SHARED(smem_raw);
  const AttentionArgs& a = args.fwd;
  const int64_t Tq = a.q_len, Tk = a.kv_len, D = a.head_dim;
  T* sq = reinterpret_cast<T*>(smem_raw);  // [kBr, D]
  T* sdo = sq + kBr * D;                   // [kBr, D]
  T* sk = sdo + kBr * D;                   // [kBc, D]
  T* sv = sk + kBc * D;                    // [kBc, D]
  T* sds = sv + kBc * D;                   // [kBr, kPad]
  T* slse = sds + kBr * kPad;              // [kBr]
  T* sdelta = slse + kBr;                  // [kBr]
  const int64_t bh = blockIdx.y;
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * kBr;
  const int r = threadIdx.x / kRowThreads, part = threadIdx.x % kRowThreads;
  const T scale = static_cast<T>(a.scale);
  const T* k = static_cast<const T*>(a.k) + kv_matrix(a, bh) * Tk * D;
  const T* v = static_cast<const T*>(a.v) + kv_matrix(a, bh) * Tk * D;

  load_tile(sq, static_cast<const T*>(a.q) + (bh * Tq + q0) * D, kBr, Tq - q0, D);
  load_tile(sdo, static_cast<const T*>(args.dout) + (bh * Tq + q0) * D, kBr, Tq - q0, D);
  load_row_stats(slse, sdelta, a.lse, delta, bh * Tq + q0, Tq - q0);
  T dq[kDPer];
  for (int n = 0; n < kDPer; ++n) dq[n] = 0;
  const int64_t end = key_end(a, q0);
  for (int64_t k0 = 0; k0 < end; k0 += kBc) {
    __syncthreads();
    load_tile(sk, k + k0 * D, kBc, Tk - k0, D);
    load_tile(sv, v + k0 * D, kBc, Tk - k0, D);
    __syncthreads();
    backward_tile(a, bh, q0, k0, sq, sk, sdo, sv, slse, sdelta, static_cast<T*>(nullptr), sds);
    __syncthreads();
    for (int cc = 0; cc < kBc; ++cc) {
      const T ds = sds[r * kPad + cc];
      LETHE_UNROLL
      for (int n = 0; n < kDPer; ++n) {
        const int64_t d = part + n * kRowThreads;
        if (d < D) dq[n] += ds * sk[cc * D + d];
      }
    }
  }
  const int64_t i = q0 + r;
  if (i >= Tq) return;
  T* gdq = static_cast<T*>(args.dq) + (bh * Tq + i) * D;
  LETHE_UNROLL
  for (int n = 0; n < kDPer; ++n) {
    const int64_t d = part + n * kRowThreads;
    if (d < D) gdq[d] = scale * dq[n];
  }
}

// ---- bf16 compute on tensor cores (AttentionArgs::compute == GemmCompute::bf16) --------------
//
// The forward with q·kᵀ and p·v on tensor cores through WMMA (m16n16k16, bf16 operands, f32
// accumulation), for f32 tensors and head dims that are multiples of 16 up to kMaxHeadDim: q, k
// and v are rounded to bf16 as their tiles enter shared memory, the probabilities as they leave
// the softmax (what FlashAttention does in bf16); the softmax statistics, the output accumulator
// and lse stay f32. The 4 warps share the 2 × 2 score tiles of a 32 × 32 block and the 2 × D/16
// output tiles. WMMA's element-to-lane mapping is opaque, so the per-row rescaling happens on the
// f32 accumulator in shared memory, not in the fragments.

// Byte offsets of the bf16 kernel's shared arrays, each 32-byte aligned (WMMA's requirement).
struct Bf16Layout {
  size_t q, k, v, s, p, o, pv, stats, total;
  __host__ __device__ static size_t take(size_t& at, size_t bytes) {
    const size_t here = at;
    at += (bytes + 31) / 32 * 32;
    return here;
  }
  __host__ __device__ explicit Bf16Layout(int64_t D) {
    size_t at = 0;
    const size_t d = static_cast<size_t>(D);
    q = take(at, kBr * d * sizeof(__nv_bfloat16));
    k = take(at, kBc * d * sizeof(__nv_bfloat16));
    v = take(at, kBc * d * sizeof(__nv_bfloat16));
    s = take(at, kBr * kBc * sizeof(float));
    p = take(at, kBr * kBc * sizeof(__nv_bfloat16));
    o = take(at, kBr * d * sizeof(float));
    pv = take(at, kBr * d * sizeof(float));
    stats = take(at, 3 * kBr * sizeof(float));  // m, l, alpha per row
    total = at;
  }
};

__device__ __forceinline__ void load_tile_bf16(__nv_bfloat16* dst, const float* src, int64_t rows,
                                               int64_t valid, int64_t D) {
  for (int64_t idx = threadIdx.x; idx < rows * D; idx += blockDim.x)
    dst[idx] = __float2bfloat16(idx / D < valid ? src[idx] : 0.0f);
}

// C[M × N] = A[M × K] · B[K × N] (or C += … with `accumulate`) on tensor cores, for operands in
// shared memory: A and B bf16 with the WMMA layouts LA and LB (row_major: element (i, j) at
// i·ld + j; col_major: at j·ld + i) and leading dimensions lda, ldb; C f32 row-major with ldc.
// M, N, K are multiples of 16; the 16 × 16 output tiles are shared out over the block's warps
// (each tile to one warp, so no two warps write the same C). Every thread of the block calls it.
template <typename LA, typename LB>
__device__ void smem_mma(float* C, int ldc, const __nv_bfloat16* A, int lda, const __nv_bfloat16* B,
                         int ldb, int M, int N, int K, bool accumulate) {
  namespace wmma = nvcuda::wmma;
  constexpr bool a_row = std::is_same_v<LA, wmma::row_major>;
  constexpr bool b_row = std::is_same_v<LB, wmma::row_major>;
  const int warps = static_cast<int>(blockDim.x) / 32, tiles_n = N / 16;
  for (int t = static_cast<int>(threadIdx.x) / 32; t < (M / 16) * tiles_n; t += warps) {
    const int tm = t / tiles_n, tn = t % tiles_n;
    float* c = C + tm * 16 * ldc + tn * 16;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    if (accumulate)
      wmma::load_matrix_sync(acc, c, static_cast<unsigned>(ldc), wmma::mem_row_major);
    else
      wmma::fill_fragment(acc, 0.0f);
    for (int kk = 0; kk < K; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, LA> fa;
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, LB> fb;
      wmma::load_matrix_sync(fa, a_row ? A + tm * 16 * lda + kk : A + kk * lda + tm * 16,
                             static_cast<unsigned>(lda));
      wmma::load_matrix_sync(fb, b_row ? B + kk * ldb + tn * 16 : B + tn * 16 * ldb + kk,
                             static_cast<unsigned>(ldb));
      wmma::mma_sync(acc, fa, fb, acc);
    }
    wmma::store_matrix_sync(c, acc, static_cast<unsigned>(ldc), wmma::mem_row_major);
  }
}

__global__ void flash_forward_bf16_kernel(AttentionArgs a) {
  namespace wmma = nvcuda::wmma;
  LETHE_DYNAMIC_SHARED(smem_raw);
  const int64_t Tq = a.q_len, Tk = a.kv_len, D = a.head_dim;
  const Bf16Layout L(D);
  auto* sq = reinterpret_cast<__nv_bfloat16*>(smem_raw + L.q);  // [kBr, D]
  auto* sk = reinterpret_cast<__nv_bfloat16*>(smem_raw + L.k);  // [kBc, D]
  auto* sv = reinterpret_cast<__nv_bfloat16*>(smem_raw + L.v);  // [kBc, D]
  auto* ss = reinterpret_cast<float*>(smem_raw + L.s);          // [kBr, kBc] raw q·kᵀ
  auto* sp = reinterpret_cast<__nv_bfloat16*>(smem_raw + L.p);  // [kBr, kBc] probabilities
  auto* so = reinterpret_cast<float*>(smem_raw + L.o);          // [kBr, D] output accumulator
  auto* spv = reinterpret_cast<float*>(smem_raw + L.pv);        // [kBr, D] this tile's p·v
  float* sm = reinterpret_cast<float*>(smem_raw + L.stats);     // running max per row
  float* sl = sm + kBr;                                         // running sum per row
  float* salpha = sl + kBr;                                     // this tile's rescaling
  const int64_t bh = blockIdx.y, b = bh / a.heads;
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * kBr;
  const int64_t kvs = a.kv_stride ? a.kv_stride : Tk * D;
  const float* q = static_cast<const float*>(a.q) + (bh * Tq + q0) * D;
  const float* k = static_cast<const float*>(a.k) + kv_matrix(a, bh) * kvs;
  const float* v = static_cast<const float*>(a.v) + kv_matrix(a, bh) * kvs;
  const float scale = static_cast<float>(a.scale);

  load_tile_bf16(sq, q, kBr, Tq - q0, D);
  for (int64_t idx = threadIdx.x; idx < kBr * D; idx += blockDim.x) so[idx] = 0.0f;
  for (int r = threadIdx.x; r < kBr; r += blockDim.x) {
    sm[r] = -INFINITY;
    sl[r] = 0.0f;
  }
  const int64_t end = key_end(a, q0);
  for (int64_t k0 = 0; k0 < end; k0 += kBc) {
    __syncthreads();
    load_tile_bf16(sk, k + k0 * D, kBc, Tk - k0, D);
    load_tile_bf16(sv, v + k0 * D, kBc, Tk - k0, D);
    __syncthreads();
    // The raw scores q·kᵀ (k as a column-major B: element (d, j) at j·D + d).
    smem_mma<wmma::row_major, wmma::col_major>(ss, kBc, sq, static_cast<int>(D), sk,
                                               static_cast<int>(D), kBr, kBc, static_cast<int>(D),
                                               false);
    __syncthreads();
    // The online softmax: the last warp's lane r owns row r (the last warp, so that under the
    // emulator, which runs warps in order, a missing barrier before p·v reads stale values).
    if (threadIdx.x >= kFlashThreads - kBr) {
      const int r = static_cast<int>(threadIdx.x) - (kFlashThreads - kBr);
      const int64_t i = q0 + r;
      float tile_max = -INFINITY;
      for (int c = 0; c < kBc; ++c) {
        const int64_t j = k0 + c;
        const bool ok = i < Tq && j < Tk && sees(a, b, i, j);
        const float s = ok ? scale * ss[r * kBc + c] : -INFINITY;
        ss[r * kBc + c] = s;
        tile_max = fmaxf(tile_max, s);
      }
      const float m_new = fmaxf(sm[r], tile_max);
      float alpha = 1.0f, sum = 0.0f;
      if (m_new != -INFINITY) {
        alpha = expf(sm[r] - m_new);
        for (int c = 0; c < kBc; ++c) {
          const __nv_bfloat16 p = __float2bfloat16(expf(ss[r * kBc + c] - m_new));
          sum += __bfloat162float(p);  // the sum of what p·v multiplies, before dropout
          sp[r * kBc + c] = a.dropout > 0.0
                                ? __float2bfloat16(__bfloat162float(p) *
                                                   drop_factor<float>(a, bh * Tq + i, k0 + c))
                                : p;
        }
        sm[r] = m_new;
      } else {
        for (int c = 0; c < kBc; ++c) sp[r * kBc + c] = __float2bfloat16(0.0f);
      }
      sl[r] = sl[r] * alpha + sum;
      salpha[r] = alpha;
    }
    __syncthreads();
    // This tile's p·v.
    smem_mma<wmma::row_major, wmma::row_major>(spv, static_cast<int>(D), sp, kBc, sv,
                                               static_cast<int>(D), kBr, static_cast<int>(D), kBc,
                                               false);
    __syncthreads();
    for (int64_t idx = threadIdx.x; idx < kBr * D; idx += blockDim.x)
      so[idx] = so[idx] * salpha[idx / D] + spv[idx];
  }
  __syncthreads();
  for (int64_t idx = threadIdx.x; idx < kBr * D; idx += blockDim.x) {
    const int r = static_cast<int>(idx / D);
    if (q0 + r >= Tq) continue;
    const bool any = sl[r] > 0.0f;
    static_cast<float*>(a.out)[(bh * Tq + q0) * D + idx] = any ? so[idx] / sl[r] : 0.0f;
  }
  for (int r = threadIdx.x; r < kBr; r += blockDim.x) {
    if (q0 + r >= Tq || !a.lse) continue;
    a.lse[bh * Tq + q0 + r] = sl[r] > 0.0f ? sm[r] + logf(sl[r]) : -INFINITY;
  }
}

// The backward in bf16 compute: the same schedule as the f32 kernels, with every tile product on
// tensor cores (s = q·kᵀ and dp = dO·vᵀ, then dv += pᵀ·dO and dk += dSᵀ·q per key tile, dq += dS·k
// per query tile); q, k, v, dO, p and dS enter the products as bf16, the probabilities are
// recomputed in f32 from the saved lse, and the gradients accumulate in f32 in shared memory.

// Byte offsets of the bf16 backward kernels' shared arrays (32-byte aligned for WMMA).
struct Bf16BackwardLayout {
  size_t q, dout, k, v, s, dp, p, ds, acc1, acc2, stats, total;
  __host__ __device__ explicit Bf16BackwardLayout(int64_t D) {
    size_t at = 0;
    const size_t d = static_cast<size_t>(D), h = sizeof(__nv_bfloat16), f = sizeof(float);
    q = Bf16Layout::take(at, kBr * d * h);
    dout = Bf16Layout::take(at, kBr * d * h);
    k = Bf16Layout::take(at, kBc * d * h);
    v = Bf16Layout::take(at, kBc * d * h);
    s = Bf16Layout::take(at, kBr * kBc * f);
    dp = Bf16Layout::take(at, kBr * kBc * f);
    p = Bf16Layout::take(at, kBr * kBc * h);
    ds = Bf16Layout::take(at, kBr * kBc * h);
    acc1 = Bf16Layout::take(at, (kBr > kBc ? kBr : kBc) * d * f);  // dk, or dq
    acc2 = Bf16Layout::take(at, kBc * d * f);                      // dv
    stats = Bf16Layout::take(at, 2 * kBr * f);                     // lse, delta per query row
    total = at;
  }
};

// s = q·kᵀ and dp = dO·vᵀ of the current tiles, then p and dS (bf16) elementwise; zero where j
// is hidden from i or i sees no key.
__device__ void backward_tile_bf16(const AttentionArgs& a, int64_t bh, int64_t q0, int64_t k0,
                                   unsigned char* smem, const Bf16BackwardLayout& L) {
  namespace wmma = nvcuda::wmma;
  const int D = static_cast<int>(a.head_dim);
  auto* sq = reinterpret_cast<__nv_bfloat16*>(smem + L.q);
  auto* sdo = reinterpret_cast<__nv_bfloat16*>(smem + L.dout);
  auto* sk = reinterpret_cast<__nv_bfloat16*>(smem + L.k);
  auto* sv = reinterpret_cast<__nv_bfloat16*>(smem + L.v);
  auto* ss = reinterpret_cast<float*>(smem + L.s);
  auto* sdp = reinterpret_cast<float*>(smem + L.dp);
  auto* sp = reinterpret_cast<__nv_bfloat16*>(smem + L.p);
  auto* sds = reinterpret_cast<__nv_bfloat16*>(smem + L.ds);
  const float* slse = reinterpret_cast<float*>(smem + L.stats);
  const float* sdelta = slse + kBr;
  smem_mma<wmma::row_major, wmma::col_major>(ss, kBc, sq, D, sk, D, kBr, kBc, D, false);
  smem_mma<wmma::row_major, wmma::col_major>(sdp, kBc, sdo, D, sv, D, kBr, kBc, D, false);
  __syncthreads();
  const float scale = static_cast<float>(a.scale);
  for (int idx = threadIdx.x; idx < kBr * kBc; idx += blockDim.x) {
    const int rr = idx / kBc, cc = idx % kBc;
    const int64_t i = q0 + rr, j = k0 + cc;
    float p = 0.0f, ds = 0.0f;
    if (i < a.q_len && j < a.kv_len && slse[rr] != -INFINITY && sees(a, bh / a.heads, i, j)) {
      p = expf(scale * ss[idx] - slse[rr]);
      const float m = drop_factor<float>(a, bh * a.q_len + i, j);
      ds = p * (m * sdp[idx] - sdelta[rr]);
      p *= m;
    }
    sp[idx] = __float2bfloat16(p);
    sds[idx] = __float2bfloat16(ds);
  }
  __syncthreads();
}

__device__ void load_row_stats_f32(float* slse, float* sdelta, const float* lse, const float* delta,
                                   int64_t first, int64_t valid) {
  for (int rr = threadIdx.x; rr < kBr; rr += blockDim.x) {
    const bool ok = rr < valid;
    slse[rr] = ok ? lse[first + rr] : -INFINITY;
    sdelta[rr] = ok ? delta[first + rr] : 0.0f;
  }
}

// Grid (key tiles, batch · kv heads): dk and dv of one key tile, accumulated over the query tiles
// of every query head of the group.
__global__ void flash_backward_dkv_bf16_kernel(AttentionBackwardArgs args, const float* delta) {
  namespace wmma = nvcuda::wmma;
  LETHE_DYNAMIC_SHARED(smem_raw);
  const AttentionArgs& a = args.fwd;
  const int64_t Tq = a.q_len, Tk = a.kv_len, D = a.head_dim;
  const Bf16BackwardLayout L(D);
  auto* sq = reinterpret_cast<__nv_bfloat16*>(smem_raw + L.q);
  auto* sdo = reinterpret_cast<__nv_bfloat16*>(smem_raw + L.dout);
  auto* sp = reinterpret_cast<__nv_bfloat16*>(smem_raw + L.p);
  auto* sds = reinterpret_cast<__nv_bfloat16*>(smem_raw + L.ds);
  auto* sdk = reinterpret_cast<float*>(smem_raw + L.acc1);  // [kBc, D]
  auto* sdv = reinterpret_cast<float*>(smem_raw + L.acc2);  // [kBc, D]
  auto* slse = reinterpret_cast<float*>(smem_raw + L.stats);
  const int64_t bkv = blockIdx.y, kvh = kv_heads_of(a), group = group_of(a);
  const int64_t k0 = static_cast<int64_t>(blockIdx.x) * kBc;
  const int d = static_cast<int>(D);

  load_tile_bf16(reinterpret_cast<__nv_bfloat16*>(smem_raw + L.k),
                 static_cast<const float*>(a.k) + (bkv * Tk + k0) * D, kBc, Tk - k0, D);
  load_tile_bf16(reinterpret_cast<__nv_bfloat16*>(smem_raw + L.v),
                 static_cast<const float*>(a.v) + (bkv * Tk + k0) * D, kBc, Tk - k0, D);
  for (int64_t idx = threadIdx.x; idx < kBc * D; idx += blockDim.x) sdk[idx] = sdv[idx] = 0.0f;
  // Every query head of the kv head's group, in order (grouped-query attention).
  for (int64_t g = 0; g < group; ++g) {
    const int64_t bh = (bkv / kvh) * a.heads + (bkv % kvh) * group + g;
    const float* q = static_cast<const float*>(a.q) + bh * Tq * D;
    const float* dout = static_cast<const float*>(args.dout) + bh * Tq * D;
    for (int64_t q0 = query_begin(a, k0) / kBr * kBr; q0 < Tq; q0 += kBr) {
      __syncthreads();
      load_tile_bf16(sq, q + q0 * D, kBr, Tq - q0, D);
      load_tile_bf16(sdo, dout + q0 * D, kBr, Tq - q0, D);
      load_row_stats_f32(slse, slse + kBr, a.lse, delta, bh * Tq + q0, Tq - q0);
      __syncthreads();
      backward_tile_bf16(a, bh, q0, k0, smem_raw, L);
      // pᵀ and dSᵀ: the [kBr, kBc] row-major tiles read as column-major [kBc, kBr] A operands.
      smem_mma<wmma::col_major, wmma::row_major>(sdv, d, sp, kBc, sdo, d, kBc, d, kBr, true);
      smem_mma<wmma::col_major, wmma::row_major>(sdk, d, sds, kBc, sq, d, kBc, d, kBr, true);
    }
  }
  __syncthreads();
  const float scale = static_cast<float>(a.scale);
  for (int64_t idx = threadIdx.x; idx < kBc * D; idx += blockDim.x) {
    const int64_t j = k0 + idx / D;
    if (j >= Tk) continue;
    if (args.dk) static_cast<float*>(args.dk)[(bkv * Tk + k0) * D + idx] = scale * sdk[idx];
    if (args.dv) static_cast<float*>(args.dv)[(bkv * Tk + k0) * D + idx] = sdv[idx];
  }
}

// Grid (query tiles, batch · heads): dq of one query tile, accumulated over the key tiles.
__global__ void flash_backward_dq_bf16_kernel(AttentionBackwardArgs args, const float* delta) {
  namespace wmma = nvcuda::wmma;
  LETHE_DYNAMIC_SHARED(smem_raw);
  const AttentionArgs& a = args.fwd;
  const int64_t Tq = a.q_len, Tk = a.kv_len, D = a.head_dim;
  const Bf16BackwardLayout L(D);
  auto* sk = reinterpret_cast<__nv_bfloat16*>(smem_raw + L.k);
  auto* sv = reinterpret_cast<__nv_bfloat16*>(smem_raw + L.v);
  auto* sds = reinterpret_cast<__nv_bfloat16*>(smem_raw + L.ds);
  auto* sdq = reinterpret_cast<float*>(smem_raw + L.acc1);  // [kBr, D]
  auto* slse = reinterpret_cast<float*>(smem_raw + L.stats);
  const int64_t bh = blockIdx.y;
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * kBr;
  const float* k = static_cast<const float*>(a.k) + kv_matrix(a, bh) * Tk * D;
  const float* v = static_cast<const float*>(a.v) + kv_matrix(a, bh) * Tk * D;
  const int d = static_cast<int>(D);

  load_tile_bf16(reinterpret_cast<__nv_bfloat16*>(smem_raw + L.q),
                 static_cast<const float*>(a.q) + (bh * Tq + q0) * D, kBr, Tq - q0, D);
  load_tile_bf16(reinterpret_cast<__nv_bfloat16*>(smem_raw + L.dout),
                 static_cast<const float*>(args.dout) + (bh * Tq + q0) * D, kBr, Tq - q0, D);
  load_row_stats_f32(slse, slse + kBr, a.lse, delta, bh * Tq + q0, Tq - q0);
  for (int64_t idx = threadIdx.x; idx < kBr * D; idx += blockDim.x) sdq[idx] = 0.0f;
  const int64_t end = key_end(a, q0);
  for (int64_t k0 = 0; k0 < end; k0 += kBc) {
    __syncthreads();
    load_tile_bf16(sk, k + k0 * D, kBc, Tk - k0, D);
    load_tile_bf16(sv, v + k0 * D, kBc, Tk - k0, D);
    __syncthreads();
    backward_tile_bf16(a, bh, q0, k0, smem_raw, L);
    smem_mma<wmma::row_major, wmma::row_major>(sdq, d, sds, kBc, sk, d, kBr, d, kBc, true);
  }
  __syncthreads();
  const float scale = static_cast<float>(a.scale);
  for (int64_t idx = threadIdx.x; idx < kBr * D; idx += blockDim.x)
    if (q0 + idx / D < Tq)
      static_cast<float*>(args.dq)[(bh * Tq + q0) * D + idx] = scale * sdq[idx];
}

// Raises a kernel's dynamic shared-memory limit past the 48 KB default when needed.
template <typename Kernel>
void allow_shared(Kernel kernel, size_t bytes, const cudaDeviceProp& props, const char* what) {
  LETHE_CHECK(bytes <= props.sharedMemPerBlockOptin, what, ": needs ", bytes,
              " bytes of shared memory per block (the device has ", props.sharedMemPerBlockOptin,
              ")");
  if (bytes > 48 * 1024)
    LETHE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(bytes)));
}

dim3 tiles(int64_t len, int64_t tile, int64_t bh) {
  LETHE_CHECK(bh < 65536, "flash attention: batch × heads ", bh, " exceeds the grid's 65535");
  return dim3(static_cast<unsigned>((len + tile - 1) / tile), static_cast<unsigned>(bh));
}

}  // namespace

bool flash_attention_supported(const AttentionArgs& a) {
  return a.head_dim >= 1 && a.head_dim <= kMaxHeadDim && a.batch * a.heads < 65536 &&
         (a.dtype == DType::f32 || a.dtype == DType::f64);
}

void flash_attention_forward(CudaBackend& be, const AttentionArgs& a) {
  cuda_dispatch_float(a.dtype, "attention_forward", [&](auto tag) {
    using T = decltype(tag);
    const int64_t bh = a.batch * a.heads;
    if (bh == 0 || a.q_len == 0) return;
    if constexpr (std::is_same_v<T, float>) {
      if (a.compute == GemmCompute::bf16 && a.head_dim % 16 == 0) {
        const size_t bytes = Bf16Layout(a.head_dim).total;
        allow_shared(flash_forward_bf16_kernel, bytes, be.props(),
                     "attention_forward (flash bf16)");
        launch("attention_forward (flash bf16)", flash_forward_bf16_kernel, tiles(a.q_len, kBr, bh),
               kFlashThreads, bytes, a);
        return;
      }
    }
    const size_t shmem = ((kBr + 2 * kBc) * a.head_dim + kBr * kPad) * sizeof(T);
    allow_shared(flash_forward_kernel<T>, shmem, be.props(), "attention_forward (flash)");
    launch("attention_forward (flash)", flash_forward_kernel<T>, tiles(a.q_len, kBr, bh),
           kFlashThreads, shmem, a);
  });
}

void flash_attention_backward(CudaBackend& be, const AttentionBackwardArgs& args) {
  const AttentionArgs& a = args.fwd;
  cuda_dispatch_float(a.dtype, "attention_backward", [&](auto tag) {
    using T = decltype(tag);
    const int64_t bh = a.batch * a.heads, rows = bh * a.q_len, D = a.head_dim;
    DeviceScratch delta(be, static_cast<size_t>(rows > 0 ? rows : 1) * sizeof(T));
    if (rows > 0)
      launch("attention_backward (flash delta)", flash_delta_kernel<T>, grid_for(rows), kThreads, 0,
             rows, D, static_cast<const T*>(a.out), static_cast<const T*>(args.dout),
             delta.as<T>());
    if constexpr (std::is_same_v<T, float>) {
      if (a.compute == GemmCompute::bf16 && D % 16 == 0) {
        const size_t bytes = Bf16BackwardLayout(D).total;
        if (bh > 0 && a.kv_len > 0 && (args.dk || args.dv)) {
          allow_shared(flash_backward_dkv_bf16_kernel, bytes, be.props(),
                       "attention_backward (flash bf16)");
          launch("attention_backward (flash bf16 dk, dv)", flash_backward_dkv_bf16_kernel,
                 tiles(a.kv_len, kBc, a.batch * kv_heads_of(a)), kFlashThreads, bytes, args,
                 static_cast<const float*>(delta.as<float>()));
        }
        if (rows > 0 && args.dq) {
          allow_shared(flash_backward_dq_bf16_kernel, bytes, be.props(),
                       "attention_backward (flash bf16)");
          launch("attention_backward (flash bf16 dq)", flash_backward_dq_bf16_kernel,
                 tiles(a.q_len, kBr, bh), kFlashThreads, bytes, args,
                 static_cast<const float*>(delta.as<float>()));
        }
        return;
      }
    }
    if (bh > 0 && a.kv_len > 0 && (args.dk || args.dv)) {
      const size_t shmem = (2 * (kBr + kBc) * D + 2 * kBr * kPad + 2 * kBr) * sizeof(T);
      allow_shared(flash_backward_dkv_kernel<T>, shmem, be.props(), "attention_backward (flash)");
      launch("attention_backward (flash dk, dv)", flash_backward_dkv_kernel<T>,
             tiles(a.kv_len, kBc, a.batch * kv_heads_of(a)), kFlashThreads, shmem, args,
             static_cast<const T*>(delta.as<T>()));
    }
    if (rows > 0 && args.dq) {
      const size_t shmem = (2 * (kBr + kBc) * D + kBr * kPad + 2 * kBr) * sizeof(T);
      allow_shared(flash_backward_dq_kernel<T>, shmem, be.props(), "attention_backward (flash)");
      launch("attention_backward (flash dq)", flash_backward_dq_kernel<T>, tiles(a.q_len, kBr, bh),
             kFlashThreads, shmem, args, static_cast<const T*>(delta.as<T>()));
    }
  });
}

}  // namespace lethe::kernels
