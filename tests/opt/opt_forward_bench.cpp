// CPU forward throughput of an OPT-shaped model with random weights (a tool, not a test):
//   opt_forward_bench [batch] [seq] [iters] [layers]   (default 4 128 3 12: opt-125m's shape)
// Prints one JSON line; docs/opt.md has the numbers beside transformers on the same machine.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>

#include "engine/autograd.h"
#include "models/opt/opt_model.h"

int main(int argc, char** argv) {
  using namespace lethe;
  const int64_t B = argc > 1 ? std::atoll(argv[1]) : 4;
  const int64_t T = argc > 2 ? std::atoll(argv[2]) : 128;
  const int iters = argc > 3 ? std::atoi(argv[3]) : 3;
  models::OptConfig c;  // opt-125m
  if (argc > 4) c.num_hidden_layers = std::atoll(argv[4]);
  models::OptModel model(c);
  {
    NoGradGuard ng;
    Tensor w = model.parameters().flat_weights();
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.f, 0.02f);
    std::vector<float> v(static_cast<size_t>(w.numel()));
    for (float& x : v) x = nd(rng);
    w.copy_(Tensor::from_vector(v, w.shape()));
  }
  std::vector<int64_t> ids(static_cast<size_t>(B * T));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = 3 + static_cast<int64_t>(i * 7919 % 50000);
  Tensor t_ids = Tensor::from_vector(ids, {B, T}, DType::i64);
  Tensor mask = Tensor::ones({B, T}, DType::i64);
  NoGradGuard ng;
  model.forward(t_ids, mask);  // warm-up
  double best = 1e30;
  for (int i = 0; i < iters; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    Tensor logits = model.forward(t_ids, mask);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, s);
  }
  std::printf(
      "{\"batch\":%lld,\"seq\":%lld,\"layers\":%lld,\"best_s\":%.4f,\"tokens_per_s\":%.1f}\n",
      static_cast<long long>(B), static_cast<long long>(T),
      static_cast<long long>(c.num_hidden_layers), best, B * T / best);
  return 0;
}
