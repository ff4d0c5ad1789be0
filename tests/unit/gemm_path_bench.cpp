// The CPU GEMM paths side by side (Google Benchmark): oneDNN matmul primitives (the default)
// against dnnl_sgemm (the earlier path), f32 and bf16 matmul precision, on the GEMMs of an
// opt-125m training step with 4 × 128 tokens (forward x·Wᵀ, input gradient g·W, weight gradient
// gᵀ·x, and the fused LM head's chunk of 333 rows). Counter: FLOP/s. docs/perf.md has the table.
//   build/tests/unit/gemm_path_bench --benchmark_min_time=0.5
#include <benchmark/benchmark.h>
#include <omp.h>

#include <string>
#include <vector>

#include "kernels/backend.h"

using namespace lethe::kernels;

namespace {

struct GemmShape {
  const char* name;
  bool ta, tb;
  int64_t m, n, k;
};

const GemmShape kShapes[] = {
    {"fwd_qkv_xWt", false, true, 512, 768, 768},
    {"fwd_fc1_xWt", false, true, 512, 3072, 768},
    {"fwd_fc2_xWt", false, true, 512, 768, 3072},
    {"dx_fc1_gW", false, false, 512, 768, 3072},
    {"dx_fc2_gW", false, false, 512, 3072, 768},
    {"dW_fc1_gtx", true, false, 3072, 768, 512},
    {"dW_fc2_gtx", true, false, 768, 3072, 512},
    {"head_logits_xWt", false, true, 333, 50272, 768},
    {"head_dx_gW", false, false, 333, 768, 50272},
    {"head_dW_gtx", true, false, 50272, 768, 333},
};

void run(benchmark::State& state, const GemmShape& s, CpuGemmPath path, bool bf16) {
  const int64_t ar = s.ta ? s.k : s.m, ac = s.ta ? s.m : s.k;
  const int64_t br = s.tb ? s.n : s.k, bc = s.tb ? s.k : s.n;
  std::vector<float> a(static_cast<size_t>(ar * ac), 0.01f), b(static_cast<size_t>(br * bc), 0.02f),
      c(static_cast<size_t>(s.m * s.n), 0.0f);
  GemmArgs g;
  g.compute = bf16 ? GemmCompute::bf16 : GemmCompute::native;
  g.trans_a = s.ta;
  g.trans_b = s.tb;
  g.m = s.m;
  g.n = s.n;
  g.k = s.k;
  g.a = a.data();
  g.lda = ac;
  g.b = b.data();
  g.ldb = bc;
  g.c = c.data();
  g.ldc = s.n;
  const CpuGemmPath before = cpu_gemm_path();
  set_cpu_gemm_path(path);
  cpu_backend().gemm(g);  // makes the primitive outside the timing
  for (auto _ : state) {
    cpu_backend().gemm(g);
    benchmark::DoNotOptimize(c.data());
  }
  state.counters["FLOP/s"] = benchmark::Counter(2.0 * static_cast<double>(s.m * s.n * s.k),
                                                benchmark::Counter::kIsIterationInvariantRate,
                                                benchmark::Counter::kIs1000);
  state.SetLabel(cpu_gemm_implementation(g));
  set_cpu_gemm_path(before);
}

}  // namespace

int main(int argc, char** argv) {
  for (const GemmShape& s : kShapes)
    for (bool bf16 : {false, true})
      for (CpuGemmPath path : {CpuGemmPath::matmul, CpuGemmPath::sgemm}) {
        const std::string name = std::string(s.name) + (bf16 ? "/bf16" : "/f32") +
                                 (path == CpuGemmPath::matmul ? "/primitive" : "/sgemm");
        benchmark::RegisterBenchmark(name.c_str(), [&s, path, bf16](benchmark::State& st) {
          run(st, s, path, bf16);
        })->Unit(benchmark::kMillisecond);
      }
  benchmark::Initialize(&argc, argv);
  benchmark::AddCustomContext("gemm", cpu_gemm_description());
  benchmark::AddCustomContext("omp_threads", std::to_string(omp_get_max_threads()));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
