// CPU GEMM. f32 (and bf16 operands with f32 accumulation) go through oneDNN matmul primitives,
// created once per shape and cached: transposes and leading dimensions are memory strides, a
// batch is one primitive, alpha is a runtime output scale, beta a sum post-op and the bias part
// of the primitive. dnnl_sgemm is kept as the reference path (set_cpu_gemm_path) and as the
// fallback wherever oneDNN would pick its slow reference kernel. f64 (gradient checks only) is a
// plain loop.
#include <omp.h>
#include <oneapi/dnnl/dnnl.hpp>

#include <array>
#include <cstdlib>
#include <cstring>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "kernels/cpu/cpu_backend.h"

namespace lethe::kernels {

namespace {

void check_dnnl(dnnl_status_t st, const GemmArgs& a) {
  LETHE_CHECK(st == dnnl_success, "gemm: oneDNN failed (status ", static_cast<int>(st),
              ") for m=", a.m, " n=", a.n, " k=", a.k);
}

// C = alpha op(A) op(B) + beta C for one matrix, f64.
void gemm_f64(const GemmArgs& g, const double* A, const double* B, double* C) {
  for (int64_t i = 0; i < g.m; ++i) {
    for (int64_t j = 0; j < g.n; ++j) {
      double acc = 0;
      for (int64_t p = 0; p < g.k; ++p) {
        double av = g.trans_a ? A[p * g.lda + i] : A[i * g.lda + p];
        double bv = g.trans_b ? B[j * g.ldb + p] : B[p * g.ldb + j];
        acc += av * bv;
      }
      double prev = g.beta == 0.0 ? 0.0 : g.beta * C[i * g.ldc + j];
      C[i * g.ldc + j] = g.alpha * acc + prev;
    }
  }
}

// Converts an f32 matrix (rows x cols with leading dim ld) to a dense bf16 copy.
void to_bf16(const float* src, int64_t rows, int64_t cols, int64_t ld, std::vector<uint16_t>& dst,
             size_t offset) {
  dst.resize(offset + static_cast<size_t>(rows * cols));
  uint16_t* out = dst.data() + offset;
#pragma omp parallel for if (rows * cols > (1 << 16))
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out[r * cols + c] = f32_to_bf16(src[r * ld + c]);
}

// The same values rounded to bf16 but kept as f32: bf16 x bf16 products are exact in f32, so an
// f32 GEMM of rounded operands equals a bf16 GEMM with f32 accumulation (used where the CPU has
// no bf16 instructions and oneDNN would fall back to a slow reference kernel).
void round_to_bf16(const float* src, int64_t rows, int64_t cols, int64_t ld,
                   std::vector<float>& dst) {
  dst.resize(static_cast<size_t>(rows * cols));
#pragma omp parallel for if (rows * cols > (1 << 16))
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      dst[r * cols + c] = bf16_to_f32(f32_to_bf16(src[r * ld + c]));
}

// Native bf16 primitives only with AMX. On AVX512-BF16 without AMX, oneDNN 2.6's bf16 kernels
// (with the per-call operand conversion) ran at 105-135 GFLOP/s against 165-225 for f32 GEMMs
// on bf16-rounded operands and 200-300 for f32 (docs/perf.md): there the rounded path, with the
// same products (bf16 × bf16 is exact in f32) and f32 accumulation, is the faster way to bf16.
bool native_bf16() {
  static const bool has = dnnl::get_effective_cpu_isa() == dnnl::cpu_isa::avx512_core_amx;
  return has;
}

CpuGemmPath initial_path() {
  const char* env = std::getenv("LETHE_CPU_GEMM");
  return env && std::strcmp(env, "sgemm") == 0 ? CpuGemmPath::sgemm : CpuGemmPath::matmul;
}
CpuGemmPath g_path = initial_path();

// One GEMM call as a primitive sees it (f32 or bf16 operands, f32 C). Batch strides may be 0
// (a broadcast operand): those run one 2-D primitive per matrix.
struct MatmulShape {
  bool bf16 = false, ta = false, tb = false, bias = false, scaled = false, relu = false;
  int64_t m = 0, n = 0, k = 0, lda = 0, ldb = 0, ldc = 0, batch = 1, sa = 0, sb = 0, sc = 0;
  double beta = 0;
  // oneDNN plans a primitive's work for the thread count at its creation: a changed count
  // (omp_set_num_threads, trainer.threads) gets primitives of its own.
  int threads = omp_get_max_threads();
  auto key() const {
    return std::make_tuple(bf16, ta, tb, bias, scaled, relu, m, n, k, lda, ldb, ldc, batch, sa, sb,
                           sc, beta, threads);
  }
};

// Memory descriptor of a [batch,] rows x cols operand stored with leading dim ld, transposed or
// not (a transposed operand is its stored matrix read column-major).
dnnl::memory::desc operand_desc(int64_t batch, int64_t bs, int64_t rows, int64_t cols, int64_t ld,
                                bool trans, dnnl::memory::data_type dt) {
  using dims = dnnl::memory::dims;
  const dims s2 = trans ? dims{1, ld} : dims{ld, 1};
  if (batch == 1) return dnnl::memory::desc(dims{rows, cols}, dt, s2);
  return dnnl::memory::desc(dims{batch, rows, cols}, dt, dims{bs, s2[0], s2[1]});
}

struct CachedMatmul {
  bool ok = false;   // false: oneDNN offers only its reference kernel here (use sgemm)
  std::string impl;  // oneDNN's implementation name
  dnnl::matmul prim;
  dnnl::memory::desc a, b, c, bias;
};

class MatmulCache {
 public:
  static MatmulCache& get() {
    static MatmulCache cache;
    return cache;
  }
  const dnnl::engine& engine() const { return engine_; }

  // The cached primitive for `s`, made on the shape's first call (a JIT compile; the same shape
  // always runs the same kernel, so results do not depend on what ran before). At most
  // kCapacity are kept, least recently used dropped first.
  std::shared_ptr<const CachedMatmul> find(const MatmulShape& s) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = map_.find(s.key());
    if (it != map_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second.second);
      return it->second.first;
    }
    auto entry = std::make_shared<CachedMatmul>(create(s));
    lru_.push_front(s.key());
    map_.emplace(s.key(), std::make_pair(entry, lru_.begin()));
    if (map_.size() > kCapacity) {
      map_.erase(lru_.back());
      lru_.pop_back();
    }
    return entry;
  }

 private:
  static constexpr size_t kCapacity = 512;
  using Key = decltype(MatmulShape().key());

  CachedMatmul create(const MatmulShape& s) const {
    using dt = dnnl::memory::data_type;
    const dt in = s.bf16 ? dt::bf16 : dt::f32;
    CachedMatmul e;
    e.a = operand_desc(s.batch, s.sa, s.m, s.k, s.lda, s.ta, in);
    e.b = operand_desc(s.batch, s.sb, s.k, s.n, s.ldb, s.tb, in);
    e.c = operand_desc(s.batch, s.sc, s.m, s.n, s.ldc, false, dt::f32);
    if (s.bias)
      e.bias = s.batch == 1 ? dnnl::memory::desc({1, s.n}, dt::f32, {s.n, 1})
                            : dnnl::memory::desc({1, 1, s.n}, dt::f32, {s.n, s.n, 1});
    dnnl::primitive_attr attr;
    if (s.scaled) attr.set_output_scales(0, {DNNL_RUNTIME_F32_VAL});
    if (s.beta != 0.0 || s.relu) {
      dnnl::post_ops po;
      if (s.beta != 0.0) po.append_sum(static_cast<float>(s.beta));
      if (s.relu) po.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
      attr.set_post_ops(po);
    }
    try {
      auto desc =
          s.bias ? dnnl::matmul::desc(e.a, e.b, e.bias, e.c) : dnnl::matmul::desc(e.a, e.b, e.c);
      dnnl::matmul::primitive_desc pd(desc, attr, engine_);
      // oneDNN lists its brgemm kernels first. In f32 they beat the GEMM-driver kernels
      // ("gemm:jit", the kernels behind dnnl_sgemm) only in the forward form A·Bᵀ with A row-major
      // (a linear layer, attention scores, the LM head); for A·B (input gradients) and Aᵀ·B (weight
      // gradients) they were up to 2× slower (docs/perf.md), so those take gemm:jit when offered.
      // A rule on the shape's form, not a timing: the same call always runs the same kernel.
      if (!s.bf16 && !(!s.ta && s.tb)) {
        dnnl::matmul::primitive_desc alt = pd;
        while (std::string(alt.impl_info_str()).rfind("brg", 0) == 0 && alt.next_impl()) {
        }
        if (std::string(alt.impl_info_str()) == "gemm:jit") pd = alt;
      }
      e.impl = pd.impl_info_str();
      e.ok = e.impl.find("ref") == std::string::npos;
      if (e.ok) e.prim = dnnl::matmul(pd);
    } catch (const dnnl::error&) {
      e.ok = false;  // unsupported strides (e.g. a broadcast batch): the caller falls back
      e.impl = "no primitive for these strides";
    }
    return e;
  }

  dnnl::engine engine_{dnnl::engine::kind::cpu, 0};
  std::mutex mu_;
  std::list<Key> lru_;
  std::map<Key, std::pair<std::shared_ptr<const CachedMatmul>, std::list<Key>::iterator>> map_;
};

// Runs `s` on the given pointers through a cached primitive; false when oneDNN has no fast
// kernel for it (nothing was written).
bool run_matmul(const MatmulShape& s, const void* a, const void* b, float* c, const float* bias,
                float alpha) {
  MatmulCache& cache = MatmulCache::get();
  std::shared_ptr<const CachedMatmul> e = cache.find(s);
  if (!e->ok) return false;
  thread_local dnnl::stream stream(cache.engine());
  const dnnl::engine& eng = cache.engine();
  std::unordered_map<int, dnnl::memory> args = {
      {DNNL_ARG_SRC, dnnl::memory(e->a, eng, const_cast<void*>(a))},
      {DNNL_ARG_WEIGHTS, dnnl::memory(e->b, eng, const_cast<void*>(b))},
      {DNNL_ARG_DST, dnnl::memory(e->c, eng, c)}};
  if (s.bias) args.emplace(DNNL_ARG_BIAS, dnnl::memory(e->bias, eng, const_cast<float*>(bias)));
  if (s.scaled)
    args.emplace(DNNL_ARG_ATTR_OUTPUT_SCALES,
                 dnnl::memory({{1}, dnnl::memory::data_type::f32, {1}}, eng, &alpha));
  e->prim.execute(stream, args);
  stream.wait();
  return true;
}

// The epilogue where the primitive did not do it: C += bias on every row (bias may be null), then
// max(C, 0) when relu.
template <typename T>
void epilogue(const GemmArgs& g, T* C, bool bias, bool relu) {
  if (!bias && !relu) return;
  const T* b = bias ? static_cast<const T*>(g.bias) : nullptr;
#pragma omp parallel for if (g.m * g.n > (1 << 15))
  for (int64_t i = 0; i < g.m; ++i) {
    T* row = C + i * g.ldc;
    if (b)
      for (int64_t j = 0; j < g.n; ++j) row[j] += b[j];
    if (relu)
      for (int64_t j = 0; j < g.n; ++j) row[j] = row[j] > T(0) ? row[j] : T(0);
  }
}
void apply_epilogue(const GemmArgs& g, float* C) {
  epilogue(g, C, g.bias != nullptr, g.relu);
}

// The reference path: dnnl_sgemm per matrix (bf16: on operands rounded to bf16), then the bias.
void gemm_sgemm(const GemmArgs& g) {
  const char ta = g.trans_a ? 'T' : 'N', tb = g.trans_b ? 'T' : 'N';
  for (int64_t bi = 0; bi < g.batch; ++bi) {
    const float* A = static_cast<const float*>(g.a) + bi * g.stride_a;
    const float* B = static_cast<const float*>(g.b) + bi * g.stride_b;
    float* C = static_cast<float*>(g.c) + bi * g.stride_c;
    if (g.compute == GemmCompute::bf16) {
      const int64_t a_rows = g.trans_a ? g.k : g.m, a_cols = g.trans_a ? g.m : g.k;
      const int64_t b_rows = g.trans_b ? g.n : g.k, b_cols = g.trans_b ? g.k : g.n;
      thread_local std::vector<float> abuf, bbuf;
      round_to_bf16(A, a_rows, a_cols, g.lda, abuf);
      round_to_bf16(B, b_rows, b_cols, g.ldb, bbuf);
      check_dnnl(dnnl_sgemm(ta, tb, g.m, g.n, g.k, static_cast<float>(g.alpha), abuf.data(), a_cols,
                            bbuf.data(), b_cols, static_cast<float>(g.beta), C, g.ldc),
                 g);
    } else {
      check_dnnl(dnnl_sgemm(ta, tb, g.m, g.n, g.k, static_cast<float>(g.alpha), A, g.lda, B, g.ldb,
                            static_cast<float>(g.beta), C, g.ldc),
                 g);
    }
    apply_epilogue(g, C);
  }
}

// The call as a primitive sees it: bf16 operands are dense copies (leading dims = stored columns,
// one matrix after the other, a broadcast operand once); a single matrix has no batch strides.
MatmulShape shape_of(const GemmArgs& g) {
  MatmulShape s;
  s.bf16 = g.compute == GemmCompute::bf16;
  s.ta = g.trans_a;
  s.tb = g.trans_b;
  s.m = g.m;
  s.n = g.n;
  s.k = g.k;
  s.ldc = g.ldc;
  s.beta = g.beta;
  s.scaled = g.alpha != 1.0;
  s.bias = g.bias != nullptr && !s.scaled;  // oneDNN scales the bias too: add it after instead
  s.relu = g.relu && (s.bias || g.bias == nullptr);  // after a bias added by hand: by hand too
  s.batch = g.batch;
  if (s.bf16) {
    const int64_t a_rows = g.trans_a ? g.k : g.m, a_cols = g.trans_a ? g.m : g.k;
    const int64_t b_rows = g.trans_b ? g.n : g.k, b_cols = g.trans_b ? g.k : g.n;
    s.lda = a_cols;
    s.ldb = b_cols;
    s.sa = g.stride_a == 0 ? 0 : a_rows * a_cols;
    s.sb = g.stride_b == 0 ? 0 : b_rows * b_cols;
  } else {
    s.lda = g.lda;
    s.ldb = g.ldb;
    s.sa = g.stride_a;
    s.sb = g.stride_b;
  }
  s.sc = g.stride_c;
  if (g.batch == 1) s.sa = s.sb = s.sc = 0;
  return s;
}

// The primitive path; false when oneDNN has no fast kernel for this call (nothing written).
bool gemm_matmul(const GemmArgs& g) {
  const bool bf16 = g.compute == GemmCompute::bf16;
  if (bf16 && !native_bf16()) return false;  // rounded operands through sgemm instead
  MatmulShape s = shape_of(g);
  const void* a = g.a;
  const void* b = g.b;
  if (bf16) {
    // Dense bf16 copies of the stored operands (each matrix of the batch after the other).
    thread_local std::vector<uint16_t> ab, bb;
    const int64_t a_rows = g.trans_a ? g.k : g.m, a_cols = g.trans_a ? g.m : g.k;
    const int64_t b_rows = g.trans_b ? g.n : g.k, b_cols = g.trans_b ? g.k : g.n;
    const int64_t na = g.stride_a == 0 ? 1 : g.batch, nb = g.stride_b == 0 ? 1 : g.batch;
    ab.clear();
    bb.clear();
    for (int64_t i = 0; i < na; ++i)
      to_bf16(static_cast<const float*>(g.a) + i * g.stride_a, a_rows, a_cols, g.lda, ab,
              static_cast<size_t>(i * a_rows * a_cols));
    for (int64_t i = 0; i < nb; ++i)
      to_bf16(static_cast<const float*>(g.b) + i * g.stride_b, b_rows, b_cols, g.ldb, bb,
              static_cast<size_t>(i * b_rows * b_cols));
    a = ab.data();
    b = bb.data();
  }
  const size_t esz = bf16 ? 2 : 4;
  const float alpha = static_cast<float>(g.alpha);
  float* C = static_cast<float*>(g.c);
  const float* bias = s.bias ? static_cast<const float*>(g.bias) : nullptr;
  if (g.batch == 1 || (s.sa != 0 && s.sb != 0)) {
    if (run_matmul(s, a, b, C, bias, alpha)) {
      if ((g.bias && !s.bias) || (g.relu && !s.relu))
        for (int64_t bi = 0; bi < g.batch; ++bi) apply_epilogue(g, C + bi * g.stride_c);
      return true;
    }
    if (g.batch == 1) return false;
  }
  // A broadcast operand (batch stride 0), or strides one batched primitive refuses: one 2-D
  // primitive per matrix.
  MatmulShape one = s;
  one.batch = 1;
  one.sa = one.sb = one.sc = 0;
  for (int64_t bi = 0; bi < g.batch; ++bi) {
    const char* ai = static_cast<const char*>(a) + static_cast<size_t>(bi * s.sa) * esz;
    const char* bp = static_cast<const char*>(b) + static_cast<size_t>(bi * s.sb) * esz;
    float* ci = C + bi * g.stride_c;
    if (!run_matmul(one, ai, bp, ci, bias, alpha)) {
      LETHE_CHECK(bi == 0, "gemm: oneDNN matmul refused matrix ", bi,
                  " of a batch after the first");
      return false;
    }
    if ((g.bias && !one.bias) || (g.relu && !one.relu)) apply_epilogue(g, ci);
  }
  return true;
}

}  // namespace

void set_cpu_gemm_path(CpuGemmPath path) {
  g_path = path;
}
CpuGemmPath cpu_gemm_path() {
  return g_path;
}

std::string cpu_gemm_description() {
  const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
  std::string name;
  switch (isa) {
    case dnnl::cpu_isa::avx512_core_amx: name = "avx512_core_amx"; break;
    case dnnl::cpu_isa::avx512_core_bf16: name = "avx512_core_bf16"; break;
    case dnnl::cpu_isa::avx512_core_vnni: name = "avx512_core_vnni"; break;
    case dnnl::cpu_isa::avx512_core: name = "avx512_core"; break;
    case dnnl::cpu_isa::avx2_vnni: name = "avx2_vnni"; break;
    case dnnl::cpu_isa::avx2: name = "avx2"; break;
    default: name = "isa " + std::to_string(static_cast<int>(isa)); break;
  }
  std::string out = g_path == CpuGemmPath::matmul ? "oneDNN matmul primitives" : "dnnl_sgemm";
  out += ", " + name;
  out += native_bf16() ? ", bf16 GEMMs native (AMX)"
                       : ", bf16 GEMMs as f32 GEMMs on bf16-rounded operands (no AMX)";
  return out;
}

std::string cpu_gemm_implementation(const GemmArgs& g) {
  if (g.dtype != DType::f32) return "loop";
  if (g_path == CpuGemmPath::sgemm) return "sgemm";
  if (g.compute == GemmCompute::bf16 && !native_bf16()) return "sgemm (bf16-rounded operands)";
  const MatmulShape s = shape_of(g);
  std::shared_ptr<const CachedMatmul> e = MatmulCache::get().find(s);
  return e->ok ? e->impl : "sgemm (oneDNN offers " + e->impl + ")";
}

void CpuBackend::gemm(const GemmArgs& g) {
  LETHE_CHECK(g.m >= 0 && g.n >= 0 && g.k >= 0, "gemm: negative size");
  if (g.m == 0 || g.n == 0 || g.batch == 0) return;
  if (g.dtype == DType::f64) {
    for (int64_t b = 0; b < g.batch; ++b) {
      const double* A = static_cast<const double*>(g.a) + b * g.stride_a;
      const double* B = static_cast<const double*>(g.b) + b * g.stride_b;
      double* C = static_cast<double*>(g.c) + b * g.stride_c;
      gemm_f64(g, A, B, C);
      epilogue(g, C, g.bias != nullptr, g.relu);
    }
    return;
  }
  LETHE_CHECK(g.dtype == DType::f32, "gemm: dtype ", dtype_name(g.dtype),
              " not supported on the CPU (f32 or f64; bf16 via GemmCompute::bf16)");
  if (g.k == 0) {
    for (int64_t b = 0; b < g.batch; ++b) {
      float* C = static_cast<float*>(g.c) + b * g.stride_c;
      for (int64_t i = 0; i < g.m; ++i)
        for (int64_t j = 0; j < g.n; ++j)
          C[i * g.ldc + j] = g.beta == 0.0 ? 0.f : static_cast<float>(g.beta) * C[i * g.ldc + j];
      apply_epilogue(g, C);
    }
    return;
  }
  // Inside an OpenMP region (attention's per-head tiles) a call runs single-threaded and may run
  // beside the same shape on another thread: sgemm there, which is safe to call concurrently
  // (a primitive's library-managed scratchpad is not guaranteed to be).
  if (g_path == CpuGemmPath::matmul && !omp_in_parallel()) {
    bool done = false;
    try {
      done = gemm_matmul(g);
    } catch (const dnnl::error& e) {
      LETHE_FAIL("gemm: oneDNN matmul failed for m=", g.m, " n=", g.n, " k=", g.k, ": ", e.what());
    }
    if (done) return;
  }
  gemm_sgemm(g);
}

}  // namespace lethe::kernels
