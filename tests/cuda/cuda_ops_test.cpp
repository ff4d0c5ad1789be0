// Mode 2 of the op table: every registered op row runs on CUDA and on the CPU in f32, outputs and
// gradients compared; device allocations are poisoned (NaN) so unwritten outputs fail.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "cuda_test_util.h"
#include "engine/ops.h"
#include "op_harness.h"

namespace lethe::testing {
namespace {

class CudaVsCpu : public ::testing::TestWithParam<size_t> {};

TEST_P(CudaVsCpu, OutputsAndGradientsMatch) {
  LETHE_REQUIRE_CUDA(gpu);
  const OpCase& c = op_table().at(GetParam());
  SCOPED_TRACE(c.name);
  set_poison(true);
  std::string err;
  try {
    err = compare_backends(c, Device::cuda());
  } catch (const std::exception& e) {
    err = std::string("threw: ") + e.what();
  }
  set_poison(false);
  EXPECT_EQ(err, "") << c.name;
}

std::string case_name(const ::testing::TestParamInfo<size_t>& info) {
  std::string s = op_table().at(info.param).name;
  for (char& ch : s)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return s + "_" + std::to_string(info.param);
}

// The fused linear + cross-entropy head (engine/ops/linear_cross_entropy.cpp over the CUDA
// kernels) holds one chunk of logits at a time: forward + backward of 512 tokens × 8192 vocab in
// chunks of 64 rows, with signed per-token weights (the gradient-ascent sign) and ignored
// tokens, peaks at ≤ ¼ of the device bytes of the unfused head (linear → cross_entropy, which
// holds the whole logits and their gradient), with the same loss and gradients. The allocator
// counts the bytes. At the scale — 16k tokens × 50k vocab, 3.2 GB of f32 logits — the
// default chunk (64 MB) is 1/50 of the logits alone.
TEST(CudaFusedHead, PeakMemoryIsOneChunkNotTheLogits) {
  LETHE_REQUIRE_CUDA(gpu);
  const int64_t N = 512, V = 8192, E = 16;
  const Device dev = Device::cuda();
  std::vector<int64_t> t(N);
  std::vector<float> wt(N);
  for (int64_t i = 0; i < N; ++i) {
    t[i] = i % 7 == 3 ? -100 : (i * 131) % V;
    wt[i] = i % 2 ? -1.0f : 0.5f;
  }
  const Tensor targets = Tensor::from_vector(t, {N}, DType::i64).to(dev);
  const Tensor weights = Tensor::from_vector(wt, {N}, DType::f32).to(dev);
  struct Run {
    size_t peak = 0;
    double loss = 0;
    std::vector<double> dx, dw;
  };
  auto run = [&](bool fused) {
    Tensor x = Tensor::randn({N, E}, 1, 0.0, 1.0, DType::f32, dev).set_requires_grad(true);
    Tensor w = Tensor::randn({V, E}, 2, 0.0, 0.5, DType::f32, dev).set_requires_grad(true);
    synchronize(dev);
    const size_t base = kernels::cuda_reset_peak_bytes();
    Tensor loss;
    if (fused) {
      LinearCrossEntropyOptions o;
      o.weights = weights;
      o.chunk_rows = 64;
      loss = linear_cross_entropy(x, w, targets, o);
    } else {
      CrossEntropyOptions o;
      o.weights = weights;
      o.reduction = Reduction::none;
      loss = sum(cross_entropy(linear(x, w), targets, o));
    }
    loss.backward();
    synchronize(dev);
    Run r;
    r.peak = kernels::cuda_peak_bytes() - base;
    r.loss = loss.item();
    r.dx = x.grad().to_double_vector();
    r.dw = w.grad().to_double_vector();
    return r;
  };
  const Run fused = run(true), unfused = run(false);
  RecordProperty("fused_peak_bytes", std::to_string(fused.peak));
  RecordProperty("unfused_peak_bytes", std::to_string(unfused.peak));
  const size_t logits = static_cast<size_t>(N * V) * sizeof(float);
  EXPECT_GE(unfused.peak, logits) << "the unfused head holds the logits";
  EXPECT_LE(fused.peak * 4, unfused.peak) << fused.peak << " vs " << unfused.peak;
  EXPECT_LT(fused.peak, logits / 4);
  EXPECT_NEAR(fused.loss, unfused.loss, 1e-5 * std::fabs(unfused.loss));
  EXPECT_LE(rel_error(fused.dx, unfused.dx), 1e-5);
  EXPECT_LE(rel_error(fused.dw, unfused.dw), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Ops, CudaVsCpu, ::testing::Range<size_t>(0, op_table().size()), case_name);

}  // namespace
}  // namespace lethe::testing
