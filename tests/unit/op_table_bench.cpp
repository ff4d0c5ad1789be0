// Mode 3 of the op table: every registered row as a Google Benchmark (forward + backward in f32
// on the CPU, or on CUDA with --device=cuda). Rows are small; `lethe bench ops` times the ops at
// transformer sizes beside PyTorch.
#include <benchmark/benchmark.h>

#include <cstring>

#include "op_harness.h"

using namespace lethe;
using namespace lethe::testing;

int main(int argc, char** argv) {
  Device device = Device::cpu();
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--device=cuda") == 0) device = Device::cuda();
  for (const OpCase& c : op_table()) {
    benchmark::RegisterBenchmark(c.name.c_str(), [&c, device](benchmark::State& state) {
      std::vector<Tensor> inputs = make_inputs(c, DType::f32, device, true);
      for (auto _ : state) {
        Tensor out = c.fn(inputs);
        if (out.requires_grad()) out.backward(Tensor::ones(out.shape(), out.dtype(), out.device()));
        synchronize(device);
      }
    });
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
