// `lethe bench ops`: times the engine ops at transformer sizes (median ms, GFLOP/s, GB/s), a
// table on stderr and JSON Lines on stdout. Must not call kernels directly: it times engine ops
// as a model would run them (allocation and autograd included), like tools/bench/torch_ops.py.
#include <omp.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/ops.h"
#include "tools/cli/cli_util.h"
#include "tools/cli/commands.h"

namespace lethe::cli {

namespace {

struct BenchOptions {
  std::string dtype = "f32";
  int threads = 0;  // 0 = OpenMP's default
  std::string device = "cpu";
  int repeat = 10;
  int warmup = 2;
  std::string sizes = "full";
  std::vector<std::string> only;  // op names to run; empty = all
  bool json_only = false;
};

// One timed case. `make` builds the inputs and returns the call to time; FLOP and byte counts are
// the nominal formulas of docs/perf.md (identical in tools/bench/torch_ops.py).
struct Case {
  std::string op, pass, shape;
  double flops = 0;
  double bytes = 0;  // 0: not reported (compute-bound ops)
  std::function<std::function<void()>()> make;
};

// Deterministic pseudo-random values in [-scale, scale) (fast; the values do not matter).
Tensor random_tensor(const Shape& shape, Device device, double scale = 1.0,
                     bool requires_grad = false, uint64_t seed = 1) {
  std::vector<float> v(static_cast<size_t>(shape_numel(shape)));
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (float& x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = static_cast<float>((static_cast<double>(s >> 40) / double(1ull << 24) - 0.5) * 2 * scale);
  }
  Tensor t = Tensor::from_vector(v, shape, DType::f32, device);
  if (requires_grad) t.set_requires_grad(true);
  return t;
}

void clear_grads(std::initializer_list<Tensor> leaves) {
  for (Tensor t : leaves) t.set_grad(Tensor());
}

std::string dims(std::initializer_list<int64_t> d, const char* sep = "x") {
  std::string s;
  for (int64_t v : d) s += (s.empty() ? "" : sep) + std::to_string(v);
  return s;
}

std::vector<Case> make_cases(const BenchOptions& o, Device dev) {
  bool small = o.sizes == "small";
  std::vector<Case> cases;

  // ---- matmul a [M,K] @ b [K,N], forward: 2·M·N·K
  std::vector<std::array<int64_t, 3>> mm = {{2048, 768, 3072}, {2048, 3072, 768}, {2048, 768, 768}};
  if (small) mm = {{64, 32, 48}};
  for (auto [m, k, n] : mm) {
    cases.push_back(
        {"matmul", "fwd", dims({m, k}) + " @ " + dims({k, n}), 2.0 * m * n * k, 0, [=] {
           Tensor a = random_tensor({m, k}, dev), b = random_tensor({k, n}, dev, 1, false, 2);
           return std::function<void()>([=] { matmul(a, b); });
         }});
  }

  // ---- linear y = x w^T + b: forward 2·M·N·K; forward+backward 6·M·N·K (bias terms ignored)
  int64_t lm = small ? 64 : 2048, lk = small ? 32 : 768, ln = small ? 48 : 3072;
  std::string lshape = dims({lm, lk}) + " -> " + std::to_string(ln);
  cases.push_back({"linear", "fwd", lshape, 2.0 * lm * ln * lk, 0, [=] {
                     Tensor x = random_tensor({lm, lk}, dev),
                            w = random_tensor({ln, lk}, dev, 0.05, false, 2),
                            b = random_tensor({ln}, dev, 1, false, 3);
                     return std::function<void()>([=] { linear(x, w, b); });
                   }});
  cases.push_back({"linear", "fwd+bwd", lshape, 6.0 * lm * ln * lk, 0, [=] {
                     Tensor x = random_tensor({lm, lk}, dev, 1, true),
                            w = random_tensor({ln, lk}, dev, 0.05, true, 2),
                            b = random_tensor({ln}, dev, 1, true, 3),
                            dy = random_tensor({lm, ln}, dev, 1, false, 4);
                     return std::function<void()>([=] {
                       clear_grads({x, w, b});
                       linear(x, w, b).backward(dy);
                     });
                   }});

  // ---- attention, causal, q/k/v [B,H,T,D]: forward 2·B·H·T²·D (the causal half of 4·B·H·T²·D),
  // forward+backward 3.5× that (backward = 2.5× forward), with and without a key padding mask.
  int64_t B = small ? 1 : 4, H = small ? 2 : 12, T = small ? 16 : 256, D = small ? 8 : 64;
  double attn_flops = 3.5 * 2.0 * B * H * T * T * D;
  for (bool masked : {false, true}) {
    cases.push_back({masked ? "attention_masked" : "attention", "fwd+bwd", dims({B, H, T, D}),
                     attn_flops, 0, [=] {
                       Tensor q = random_tensor({B, H, T, D}, dev, 1, true, 1),
                              k = random_tensor({B, H, T, D}, dev, 1, true, 2),
                              v = random_tensor({B, H, T, D}, dev, 1, true, 3),
                              dout = random_tensor({B, H, T, D}, dev, 1, false, 4);
                       Tensor mask;
                       if (masked) {  // odd batch rows: the last quarter of the keys is padding
                         std::vector<int64_t> m(static_cast<size_t>(B * T), 1);
                         for (int64_t b = 1; b < B; b += 2)
                           for (int64_t t = T - T / 4; t < T; ++t) m[b * T + t] = 0;
                         mask = Tensor::from_vector(m, {B, T}, DType::i64, dev);
                       }
                       double scale = 1.0 / std::sqrt(static_cast<double>(D));
                       return std::function<void()>([=] {
                         clear_grads({q, k, v});
                         attention(q, k, v, mask, /*causal=*/true, scale).backward(dout);
                       });
                     }});
  }

  // ---- layer_norm [R,C] forward+backward: nominal 20·R·C FLOP (8 forward + 12 backward per
  // element); memory 5·R·C·4 bytes (x, y; x, dy, dx).
  int64_t R = small ? 16 : 2048, C = small ? 32 : 768;
  cases.push_back({"layer_norm", "fwd+bwd", dims({R, C}), 20.0 * R * C, 5.0 * R * C * 4, [=] {
                     Tensor x = random_tensor({R, C}, dev, 1, true),
                            w = random_tensor({C}, dev, 1, true, 2),
                            b = random_tensor({C}, dev, 1, true, 3),
                            dy = random_tensor({R, C}, dev, 1, false, 4);
                     return std::function<void()>([=] {
                       clear_grads({x, w, b});
                       layer_norm(x, w, b).backward(dy);
                     });
                   }});

  // ---- cross_entropy logits [N,V] forward+backward (token mean): nominal 5·N·V FLOP (max,
  // exp, sum; softmax - one-hot, scale); memory 3·N·V·4 bytes (read; read + write dlogits).
  int64_t N = small ? 8 : 1024, V = small ? 100 : 50272;
  cases.push_back({"cross_entropy", "fwd+bwd", dims({N, V}), 5.0 * N * V, 3.0 * N * V * 4, [=] {
                     Tensor logits = random_tensor({N, V}, dev, 4, true);
                     std::vector<int64_t> t(static_cast<size_t>(N));
                     for (int64_t i = 0; i < N; ++i) t[i] = (i * 7919) % V;
                     Tensor targets = Tensor::from_vector(t, {N}, DType::i64, dev);
                     return std::function<void()>([=] {
                       clear_grads({logits});
                       cross_entropy(logits, targets).backward();
                     });
                   }});

  if (!o.only.empty()) {
    std::erase_if(cases, [&](const Case& c) {
      return std::find(o.only.begin(), o.only.end(), c.op) == o.only.end();
    });
  }
  return cases;
}

bool is_not_implemented(const std::string& what) {
  return what.find("not implemented") != std::string::npos;
}

void run_bench_ops(const BenchOptions& o) {
  if (o.threads > 0) omp_set_num_threads(o.threads);
  int threads = omp_get_max_threads();
  Device dev = Device::parse(o.device);
  kernels::Backend& be = backend(dev);  // fails clearly when the device is unavailable
  ScopedMatmulPrecision precision(o.dtype);

  std::vector<Case> cases = make_cases(o, dev);
  LETHE_CHECK(!cases.empty(),
              "bench ops: --op selected no op (known: matmul, linear, attention, "
              "attention_masked, layer_norm, cross_entropy)");
  if (!o.json_only) {
    std::fprintf(stderr,
                 "lethe bench ops: device %s, %s, %d thread(s), median of %d (warm-up %d)\n",
                 dev.str().c_str(), o.dtype == "bf16" ? "bf16 matmuls (f32 accumulate)" : "f32",
                 threads, o.repeat, o.warmup);
    std::fprintf(stderr, "%-17s %-8s %-24s %10s %10s %9s  %s\n", "op", "pass", "shape", "ms",
                 "GFLOP/s", "GB/s", "status");
  }
  using clock = std::chrono::steady_clock;
  for (const Case& c : cases) {
    nlohmann::ordered_json line;
    line["bench"] = "ops";
    line["impl"] = "lethe";
    line["op"] = c.op;
    line["pass"] = c.pass;
    line["shape"] = c.shape;
    line["dtype"] = o.dtype;
    line["device"] = dev.str();
    line["threads"] = threads;
    line["repeat"] = o.repeat;
    std::vector<double> ms;
    std::string reason;
    try {
      std::function<void()> call = c.make();
      for (int i = 0; i < o.warmup; ++i) call();
      be.synchronize();
      for (int i = 0; i < o.repeat; ++i) {
        auto t0 = clock::now();
        call();
        be.synchronize();
        ms.push_back(std::chrono::duration<double, std::milli>(clock::now() - t0).count());
      }
    } catch (const Error& e) {
      if (!is_not_implemented(e.what())) throw;
      reason = e.what();
    }
    if (ms.empty()) {
      line["status"] = "unavailable";
      line["reason"] = reason;
      if (!o.json_only)
        std::fprintf(stderr, "%-17s %-8s %-24s %10s %10s %9s  unavailable (%s)\n", c.op.c_str(),
                     c.pass.c_str(), c.shape.c_str(), "-", "-", "-", reason.c_str());
      emit(line);
      continue;
    }
    std::sort(ms.begin(), ms.end());
    size_t n = ms.size();
    double median = n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
    double gflops = c.flops / (median * 1e6);
    line["status"] = "ok";
    line["ms"] = median;
    line["ms_min"] = ms.front();
    line["flops"] = c.flops;
    line["gflops"] = gflops;
    if (c.bytes > 0) line["gbps"] = c.bytes / (median * 1e6);
    if (!o.json_only) {
      char gb[32] = "-";
      if (c.bytes > 0) std::snprintf(gb, sizeof gb, "%.1f", c.bytes / (median * 1e6));
      std::fprintf(stderr, "%-17s %-8s %-24s %10.3f %10.1f %9s  ok\n", c.op.c_str(), c.pass.c_str(),
                   c.shape.c_str(), median, gflops, gb);
    }
    emit(line);
  }
}

}  // namespace

void add_bench_command(CLI::App& app) {
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks (see docs/perf.md)");
  bench->require_subcommand(1);
  auto o = std::make_shared<BenchOptions>();
  CLI::App* ops = bench->add_subcommand(
      "ops", "Time the engine ops at transformer sizes (table on stderr, JSON Lines on stdout)");
  ops->add_option("--dtype", o->dtype,
                  "f32, or bf16 (bf16 GEMM operands with f32 accumulation; other ops stay f32)")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->capture_default_str();
  ops->add_option("--threads", o->threads, "OpenMP threads (default: OMP_NUM_THREADS or all cores)")
      ->check(integer_in(1, 1024));
  ops->add_option("--device", o->device, "cpu or cuda[:N]")
      ->check(device_validator())
      ->capture_default_str();
  ops->add_option("--repeat", o->repeat, "Timed calls per op (the median is reported)")
      ->check(integer_in(1, 1000000))
      ->capture_default_str();
  ops->add_option("--warmup", o->warmup, "Untimed calls per op first")
      ->check(integer_in(0, 1000000))
      ->capture_default_str();
  ops->add_option("--sizes", o->sizes, "full (transformer sizes) or small (a quick check)")
      ->check(CLI::IsMember({"full", "small"}))
      ->capture_default_str();
  ops->add_option("--op", o->only,
                  "Run only these ops (matmul linear attention attention_masked layer_norm "
                  "cross_entropy)")
      ->delimiter(',');
  ops->add_flag("--json", o->json_only, "JSON Lines only: no table on stderr");
  ops->callback([o] { run_bench_ops(*o); });
}

}  // namespace lethe::cli
