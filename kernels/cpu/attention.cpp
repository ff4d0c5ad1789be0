// CPU scaled-dot-product attention with causal and key-padding masks, forward and backward.
// Work is split into (batch, head, block of queries) tiles: a thread holds at most one
// [block, Tk] tile of scores, so memory stays O(threads * block * Tk) for any sequence length.
// The backward recomputes probabilities from the saved log-sum-exp (no [Tq, Tk] matrix is kept):
// dS = P * (dP - rowsum(dO * O)). Dropout on the probabilities (AttentionArgs::dropout) draws
// its mask from the counter-based generator row by row, in both passes.

// First: it sets the compile options the row loops need (see simd.h).
#include "kernels/cpu/simd.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/rng.h"

namespace lethe::kernels {

namespace {

// Queries per tile: small enough that a causal tile skips most of the masked upper triangle and
// the tile stays in L2, large enough for an efficient GEMM.
constexpr int64_t kQueryBlock = 32;
// Below this many multiply-adds the whole call runs on one thread.
constexpr int64_t kParallelMin = 1 << 16;

// Which keys a query block can see at all, and the masks that apply inside the block.
struct Geometry {
  int64_t tq, tk, d, offset;  // query i has absolute position i + offset
  bool causal;

  // Keys [0, end) can be visible to queries [i0, i1).
  int64_t key_end(int64_t i1) const {
    return causal ? std::clamp<int64_t>(i1 + offset, 0, tk) : tk;
  }
  // Keys [0, limit) pass the causal mask for query i.
  int64_t key_limit(int64_t i) const {
    return causal ? std::clamp<int64_t>(i + offset + 1, 0, tk) : tk;
  }
};

// Computes C[m, n] = alpha * op(A) op(B) + beta * C on the CPU GEMM (single-threaded inside a
// parallel region: oneDNN does not nest).
template <typename T>
void tile_gemm(CpuBackend& be, bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha,
               const T* a, int64_t lda, const T* b, int64_t ldb, double beta, T* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  GemmArgs g;
  g.dtype = std::is_same_v<T, float> ? DType::f32 : DType::f64;
  g.trans_a = ta;
  g.trans_b = tb;
  g.m = m;
  g.n = n;
  g.k = k;
  g.a = a;
  g.lda = lda;
  g.b = b;
  g.ldb = ldb;
  g.c = c;
  g.ldc = ldc;
  g.alpha = alpha;
  g.beta = beta;
  be.gemm(g);
}

// Masks one row of scores s[0, end) in place (keys at or past `limit`, and keys whose keep flag is
// 0, become -inf), then turns it into probabilities. Returns the row's log-sum-exp, or -inf with a
// zero row when no key is visible.
template <typename T>
LETHE_SIMD_CLONES float softmax_row(T* s, int64_t limit, int64_t end, const T* keep) {
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  T m = kNegInf;
  if (keep) {
#pragma omp simd reduction(max : m)
    for (int64_t j = 0; j < limit; ++j) {
      s[j] = keep[j] != T(0) ? s[j] : kNegInf;
      m = s[j] > m ? s[j] : m;
    }
  } else {
#pragma omp simd reduction(max : m)
    for (int64_t j = 0; j < limit; ++j) m = s[j] > m ? s[j] : m;
  }
  if (m == kNegInf) {
    std::fill(s, s + end, T(0));
    return -std::numeric_limits<float>::infinity();
  }
  T sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < limit; ++j) {
    s[j] = exp_fast(s[j] - m);
    sum += s[j];
  }
  const T inv = T(1) / sum;
#pragma omp simd
  for (int64_t j = 0; j < limit; ++j) s[j] *= inv;
  std::fill(s + limit, s + end, T(0));
  return static_cast<float>(m + std::log(sum));
}

// Recomputes probabilities of one row from its scores and saved log-sum-exp.
template <typename T>
LETHE_SIMD_CLONES void probabilities_row(T* s, int64_t limit, int64_t end, const T* keep,
                                         float lse) {
  if (lse == -std::numeric_limits<float>::infinity()) {
    std::fill(s, s + end, T(0));
    return;
  }
  const T l = static_cast<T>(lse);
  if (keep) {
#pragma omp simd
    for (int64_t j = 0; j < limit; ++j) s[j] = keep[j] != T(0) ? exp_fast(s[j] - l) : T(0);
  } else {
#pragma omp simd
    for (int64_t j = 0; j < limit; ++j) s[j] = exp_fast(s[j] - l);
  }
  std::fill(s + limit, s + end, T(0));
}

// dS = P * (dP - delta) in place over dP, for one row.
template <typename T>
LETHE_SIMD_CLONES void score_gradient_row(T* dp, const T* p, int64_t end, T delta) {
#pragma omp simd
  for (int64_t j = 0; j < end; ++j) dp[j] = p[j] * (dp[j] - delta);
}

template <typename T>
LETHE_SIMD_CLONES T dot_row(const T* a, const T* b, int64_t n) {
  T acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

// The dropout factors of one row of probabilities: m[j] = 1/(1 − p) or 0 for keys [0, end), drawn
// at counters first + j (AttentionArgs::dropout).
template <typename T>
void dropout_row(T* m, int64_t end, const AttentionArgs& a, uint64_t first) {
  const uint64_t threshold = rng::dropout_threshold(a.dropout);
  const T keep = static_cast<T>(1.0 / (1.0 - a.dropout));
  for (int64_t j = 0; j < end; ++j)
    m[j] = rng::dropout_keeps(a.dropout_seed, first + static_cast<uint64_t>(j), threshold) ? keep
                                                                                           : T(0);
}

// The (batch, kv head) matrix index of query matrix bh = b·H + h (grouped-query attention).
inline int64_t kv_index(const AttentionArgs& a, int64_t bh) {
  const int64_t kvh = a.kv_heads > 0 ? a.kv_heads : a.heads;
  return (bh / a.heads) * kvh + (bh % a.heads) / (a.heads / kvh);
}

// The counter of element (bh, i, 0) of the [B·H, Tq, Tk] probabilities.
inline uint64_t dropout_counter(const AttentionArgs& a, int64_t bh, int64_t i) {
  return a.dropout_offset + static_cast<uint64_t>((bh * a.q_len + i) * a.kv_len);
}

// key_mask as 0/1 values of T, one row of Tk per batch (empty when there is no mask), so the
// masking loops compare like-sized lanes and vectorise.
template <typename T>
std::vector<T> keep_flags(const AttentionArgs& a) {
  std::vector<T> keep;
  if (!a.key_mask) return keep;
  keep.resize(static_cast<size_t>(a.batch * a.kv_len));
  for (size_t i = 0; i < keep.size(); ++i) keep[i] = a.key_mask[i] != 0 ? T(1) : T(0);
  return keep;
}

// Runs body(task) for task in [0, n) on OpenMP threads with one scratch object per thread;
// the first exception is rethrown on the calling thread.
template <typename Scratch, typename Body>
void parallel_tasks(int64_t n, bool parallel, Body&& body) {
  std::exception_ptr error;
#pragma omp parallel if (parallel)
  {
    Scratch scratch;
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < n; ++t) {
      try {
        body(t, scratch);
      } catch (...) {
#pragma omp critical(lethe_attention_error)
        if (!error) error = std::current_exception();
      }
    }
  }
  if (error) std::rethrow_exception(error);
}

template <typename T>
void attention_forward_impl(CpuBackend& be, const AttentionArgs& a) {
  const Geometry geo{a.q_len, a.kv_len, a.head_dim, a.kv_len - a.q_len, a.causal};
  const int64_t D = a.head_dim, Tq = a.q_len, Tk = a.kv_len;
  const int64_t blocks = (Tq + kQueryBlock - 1) / kQueryBlock;
  const std::vector<T> keep = keep_flags<T>(a);
  const T* q = static_cast<const T*>(a.q);
  const T* k = static_cast<const T*>(a.k);
  const T* v = static_cast<const T*>(a.v);
  T* out = static_cast<T*>(a.out);
  const int64_t kvs = a.kv_stride ? a.kv_stride : Tk * D;  // (b, h) matrices of k and v
  const bool parallel = a.batch * a.heads * Tq * Tk * D > kParallelMin;

  struct ForwardScratch {
    std::vector<T> scores, mask;
  };
  parallel_tasks<ForwardScratch>(
      a.batch * a.heads * blocks, parallel, [&](int64_t task, ForwardScratch& sc) {
        std::vector<T>& scores = sc.scores;
        std::vector<T>& mask = sc.mask;
        const int64_t bh = task / blocks, i0 = (task % blocks) * kQueryBlock;
        const int64_t i1 = std::min(Tq, i0 + kQueryBlock), rows = i1 - i0;
        const int64_t b = bh / a.heads;
        const T* qb = q + (bh * Tq + i0) * D;
        const T* kb = k + kv_index(a, bh) * kvs;
        const T* vb = v + kv_index(a, bh) * kvs;
        T* ob = out + (bh * Tq + i0) * D;
        float* lse = a.lse + bh * Tq + i0;
        const T* keep_b = keep.empty() ? nullptr : keep.data() + b * Tk;
        const int64_t end = geo.key_end(i1);
        if (end == 0) {  // no query of the block sees any key
          std::fill(ob, ob + rows * D, T(0));
          std::fill(lse, lse + rows, -std::numeric_limits<float>::infinity());
          return;
        }
        scores.resize(static_cast<size_t>(rows * end));
        T* s = scores.data();
        tile_gemm<T>(be, false, true, rows, end, D, a.scale, qb, D, kb, D, 0.0, s, end);
        for (int64_t r = 0; r < rows; ++r)
          lse[r] = softmax_row(s + r * end, geo.key_limit(i0 + r), end, keep_b);
        if (a.dropout > 0) {
          mask.resize(static_cast<size_t>(end));
          for (int64_t r = 0; r < rows; ++r) {
            dropout_row(mask.data(), end, a, dropout_counter(a, bh, i0 + r));
            T* sr = s + r * end;
            for (int64_t j = 0; j < end; ++j) sr[j] *= mask[static_cast<size_t>(j)];
          }
        }
        tile_gemm<T>(be, false, false, rows, D, end, 1.0, s, end, vb, D, 0.0, ob, D);
      });
}

template <typename T>
struct BackwardScratch {
  std::vector<T> p, dp, delta, mask, pd;  // mask and pd (dropped probabilities): dropout only
};

template <typename T>
void attention_backward_impl(CpuBackend& be, const AttentionBackwardArgs& args) {
  const AttentionArgs& a = args.fwd;
  const Geometry geo{a.q_len, a.kv_len, a.head_dim, a.kv_len - a.q_len, a.causal};
  const int64_t D = a.head_dim, Tq = a.q_len, Tk = a.kv_len;
  const std::vector<T> keep = keep_flags<T>(a);
  const T* q = static_cast<const T*>(a.q);
  const T* k = static_cast<const T*>(a.k);
  const T* v = static_cast<const T*>(a.v);
  const T* out = static_cast<const T*>(a.out);
  const T* dout = static_cast<const T*>(args.dout);
  T* dq = static_cast<T*>(args.dq);
  T* dk = static_cast<T*>(args.dk);
  T* dv = static_cast<T*>(args.dv);
  const bool parallel = a.batch * a.heads * Tq * Tk * D > kParallelMin;

  // One task per (batch, kv head): its dK and dV gather contributions from every query of every
  // query head of its group, in a fixed order.
  const int64_t kvh = a.kv_heads > 0 ? a.kv_heads : a.heads, group = a.heads / kvh;
  parallel_tasks<BackwardScratch<T>>(
      a.batch * kvh, parallel, [&](int64_t bkv, BackwardScratch<T>& sc) {
        const int64_t b = bkv / kvh;
        const T* kh = k + bkv * Tk * D;
        const T* vh = v + bkv * Tk * D;
        T* dkh = dk + bkv * Tk * D;
        T* dvh = dv + bkv * Tk * D;
        const T* keep_b = keep.empty() ? nullptr : keep.data() + b * Tk;
        std::fill(dkh, dkh + Tk * D, T(0));
        std::fill(dvh, dvh + Tk * D, T(0));
        for (int64_t g = 0; g < group; ++g) {
          const int64_t bh = b * a.heads + (bkv % kvh) * group + g;
          const T* qh = q + bh * Tq * D;
          const T* oh = out + bh * Tq * D;
          const T* doh = dout + bh * Tq * D;
          const float* lse = a.lse + bh * Tq;
          T* dqh = dq + bh * Tq * D;
          // delta_i = <dO_i, O_i> = rowsum(dP * P) for query i.
          sc.delta.resize(static_cast<size_t>(Tq));
          for (int64_t i = 0; i < Tq; ++i) sc.delta[i] = dot_row(doh + i * D, oh + i * D, D);
          for (int64_t i0 = 0; i0 < Tq; i0 += kQueryBlock) {
            const int64_t i1 = std::min(Tq, i0 + kQueryBlock), rows = i1 - i0;
            const int64_t end = geo.key_end(i1);
            if (end == 0) {
              std::fill(dqh + i0 * D, dqh + i1 * D, T(0));
              continue;
            }
            sc.p.resize(static_cast<size_t>(rows * end));
            sc.dp.resize(static_cast<size_t>(rows * end));
            T* p = sc.p.data();
            T* dp = sc.dp.data();
            const T* qb = qh + i0 * D;
            const T* dob = doh + i0 * D;
            tile_gemm<T>(be, false, true, rows, end, D, a.scale, qb, D, kh, D, 0.0, p, end);
            for (int64_t r = 0; r < rows; ++r)
              probabilities_row(p + r * end, geo.key_limit(i0 + r), end, keep_b, lse[i0 + r]);
            // With dropout the output read the dropped probabilities P∘M: dV takes them, and the
            // gradient reaching P is M∘dP (delta = rowsum(dO∘O) is unchanged).
            const T* pv = p;
            if (a.dropout > 0) {
              sc.mask.resize(static_cast<size_t>(rows * end));
              sc.pd.resize(static_cast<size_t>(rows * end));
              for (int64_t r = 0; r < rows; ++r)
                dropout_row(sc.mask.data() + r * end, end, a, dropout_counter(a, bh, i0 + r));
              for (int64_t e = 0; e < rows * end; ++e) sc.pd[e] = p[e] * sc.mask[e];
              pv = sc.pd.data();
            }
            // dV += P^T dO
            tile_gemm<T>(be, true, false, end, D, rows, 1.0, pv, end, dob, D, 1.0, dvh, D);
            // dP = dO V^T, then dS = P * (dP - delta) in place
            tile_gemm<T>(be, false, true, rows, end, D, 1.0, dob, D, vh, D, 0.0, dp, end);
            if (a.dropout > 0)
              for (int64_t e = 0; e < rows * end; ++e) dp[e] *= sc.mask[e];
            for (int64_t r = 0; r < rows; ++r)
              score_gradient_row(dp + r * end, p + r * end, end, sc.delta[i0 + r]);
            // dQ = scale * dS K;  dK += scale * dS^T Q
            tile_gemm<T>(be, false, false, rows, D, end, a.scale, dp, end, kh, D, 0.0, dqh + i0 * D,
                         D);
            tile_gemm<T>(be, true, false, end, D, rows, a.scale, dp, end, qb, D, 1.0, dkh, D);
          }
        }
      });
}

void check_args(const AttentionArgs& a, const char* what) {
  LETHE_CHECK(a.batch >= 0 && a.heads >= 0 && a.q_len >= 0 && a.kv_len >= 0 && a.head_dim >= 0,
              what, ": negative size (B=", a.batch, " H=", a.heads, " Tq=", a.q_len,
              " Tk=", a.kv_len, " D=", a.head_dim, ")");
  LETHE_CHECK(a.lse != nullptr || a.batch * a.heads * a.q_len == 0, what, ": lse buffer is null");
  LETHE_CHECK(a.dropout >= 0.0 && a.dropout < 1.0, what, ": dropout must be in [0, 1), got ",
              a.dropout);
  LETHE_CHECK(a.kv_heads == 0 || (a.kv_heads > 0 && a.heads % a.kv_heads == 0), what, ": ", a.heads,
              " query heads are not a multiple of kv_heads ", a.kv_heads);
}

}  // namespace

void CpuBackend::attention_forward(const AttentionArgs& args) {
  check_args(args, "attention_forward");
  if (args.batch * args.heads * args.q_len == 0) return;
  dispatch_float(args.dtype, "attention_forward",
                 [&](auto tag) { attention_forward_impl<decltype(tag)>(*this, args); });
}

void CpuBackend::attention_backward(const AttentionBackwardArgs& args) {
  check_args(args.fwd, "attention_backward");
  LETHE_CHECK(args.fwd.kv_stride == 0 || args.fwd.kv_stride == args.fwd.kv_len * args.fwd.head_dim,
              "attention_backward: k and v must be contiguous (kv_stride ", args.fwd.kv_stride,
              ")");
  dispatch_float(args.fwd.dtype, "attention_backward",
                 [&](auto tag) { attention_backward_impl<decltype(tag)>(*this, args); });
}

}  // namespace lethe::kernels
