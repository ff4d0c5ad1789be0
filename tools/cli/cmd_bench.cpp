// `lethe bench ops`: times the engine ops at transformer sizes (median ms, GFLOP/s, GB/s);
// `lethe bench step`: times whole unlearning steps of the real training loop (tokens/s, peak
// RSS). Both: a table on stderr, JSON Lines on stdout. Must not call kernels directly: ops are
// timed as a model runs them, steps as `lethe unlearn` runs them (tools/bench/torch_ops.py and
// torch_step.py are the PyTorch sides).
#include <omp.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/ops.h"
#include "engine/threads.h"
#include "models/llama/llama_model.h"
#include "models/opt/opt_model.h"
#include "tools/cli/cli_util.h"
#include "tools/cli/commands.h"
#include "trainers/config.h"
#include "trainers/trainer.h"

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

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

bool is_not_implemented(const std::string& what) {
  return what.find("not implemented") != std::string::npos;
}

void run_bench_ops(const BenchOptions& o) {
  set_cpu_threads(o.threads, "--threads");
  int threads = omp_get_max_threads();
  Device dev = Device::parse(o.device);
  synchronize(dev);  // fails clearly when the device is unavailable
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
      synchronize(dev);
      for (int i = 0; i < o.repeat; ++i) {
        auto t0 = clock::now();
        call();
        synchronize(dev);
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
    const double median = median_of(ms);
    double gflops = c.flops / (median * 1e6);
    line["status"] = "ok";
    line["ms"] = median;
    line["ms_min"] = *std::min_element(ms.begin(), ms.end());
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

// ---- bench step ------------------------------------------------------------------------------
// One NGDiff unlearning step of the real training loop (trainers::Trainer) on an opt-125m- or
// opt-1.3b-shaped model with random weights, as `lethe unlearn` runs it, on the CPU or a GPU;
// tools/bench/torch_step.py is the same step in PyTorch + transformers.

struct StepBenchOptions {
  std::string method = "ngdiff";  // or sft (lethe finetune's step: one batch, its NLL)
  std::string dtype = "f32";
  int threads = 2;
  int steps = 5;
  bool auto_lr = false;
  int64_t layers = 12;  // opt-125m; fewer only for a quick check
  int64_t lora = 0;     // LoRA rank on every linear layer (0: full fine-tuning)
  std::string device = "cpu";
  std::string model = "125m";  // 1.3b (OPT's) or smollm-135m (a Llama): the random model's shape
  int64_t batch = 4;           // samples per micro-batch, forget and retain each
  int64_t seq = 128;           // tokens per sample (no padding)
  bool json_only = false;
};

// The token ids of sample `index` of set `set` (0 forget, 1 retain): a 64-bit LCG mapped to
// [4, vocab), so no special token appears. tools/bench/torch_step.py draws the same ids.
std::vector<int64_t> step_bench_ids(uint64_t set, int64_t index, int64_t vocab, int64_t seq) {
  uint64_t x = (set << 32) + static_cast<uint64_t>(index) + 1;
  std::vector<int64_t> ids(static_cast<size_t>(seq));
  for (int64_t& id : ids) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    id = 4 + static_cast<int64_t>((x >> 33) % static_cast<uint64_t>(vocab - 4));
  }
  return ids;
}

// A tokenized JSONL set: every token labelled except the first (the label shift makes all
// following positions targets, as in HF).
void write_step_bench_set(const std::string& path, uint64_t set, int64_t samples, int64_t vocab,
                          int64_t seq) {
  std::ofstream out(path);
  LETHE_CHECK(out.good(), path, ": cannot write");
  for (int64_t i = 0; i < samples; ++i) {
    const std::vector<int64_t> ids = step_bench_ids(set, i, vocab, seq);
    std::vector<int64_t> labels = ids;
    labels[0] = -100;
    out << nlohmann::json{{"input_ids", ids}, {"labels", labels}}.dump() << '\n';
  }
  LETHE_CHECK(out.good(), path, ": write failed");
}

// Random weights as transformers initialises the family (init_weights), saved as a checkpoint.
template <typename Model, typename Config>
void write_random_model(const Config& config, const std::string& dir) {
  Model model(config);
  model.init_weights(/*seed=*/1);
  model.save(dir);
}

// HuggingFaceTB/SmolLM-135M's shape: a Llama with grouped-query attention (9 heads, 3 kv heads)
// and a tied head over 49,152 tokens; `layers` of its 30.
models::LlamaConfig smollm_135m(int64_t layers) {
  models::LlamaConfig c;
  c.vocab_size = 49152;
  c.hidden_size = 576;
  c.intermediate_size = 1536;
  c.num_hidden_layers = layers;
  c.num_attention_heads = 9;
  c.num_key_value_heads = 3;
  c.head_dim = 64;
  c.max_position_embeddings = 2048;
  c.rms_norm_eps = 1e-5;
  c.tie_word_embeddings = true;
  c.bos_token_id = 0;
  c.eos_token_id = 0;
  c.eos_token_ids = {0};
  return c;
}

// Runs `work` in a child process and waits for it, so that what it allocates never counts
// toward this process's peak RSS (ru_maxrss), which then is the training run's alone. Returns
// the child's own peak RSS in MiB. Call it before this process enters any OpenMP region (GNU
// OpenMP's thread pool does not survive fork).
double run_in_child(const std::function<void()>& work, const std::string& what) {
  std::fflush(nullptr);
  const pid_t pid = fork();
  LETHE_CHECK(pid >= 0, what, ": fork failed");
  if (pid == 0) {
    int rc = 0;
    try {
      work();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "lethe: error: %s: %s\n", what.c_str(), e.what());
      rc = 1;
    }
    std::fflush(nullptr);
    std::_Exit(rc);  // none of the parent's exit handlers or static destructors
  }
  int status = 0;
  rusage usage{};
  LETHE_CHECK(
      wait4(pid, &status, 0, &usage) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0, what,
      " failed");
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // KiB
}

// A fresh directory under the system's temp dir, removed with everything in it on scope exit.
class ScratchDir {
 public:
  ScratchDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "lethe-bench-step-XXXXXX");
    LETHE_CHECK(mkdtemp(tmpl.data()) != nullptr, tmpl, ": cannot create a temporary directory");
    path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }
  void remove(const std::string& name) const {
    std::error_code ec;
    std::filesystem::remove_all(path_ / name, ec);
  }

 private:
  std::filesystem::path path_;
};

// This process's resident memory now (VmRSS of /proc/self/status), in MiB; 0 where unknown.
double current_rss_mb() {
  std::ifstream status("/proc/self/status");
  std::string key;
  while (status >> key) {
    if (key == "VmRSS:") {
      double kib = 0;
      status >> kib;
      return kib / 1024.0;
    }
    status.ignore(1 << 12, '\n');
  }
  return 0;
}

void run_bench_step(const StepBenchOptions& o) {
  set_cpu_threads(o.threads, "--threads");  // checked here: the step runs in a child process
  const bool llama = o.model == "smollm-135m";
  models::OptConfig config;  // transformers' OPTConfig defaults: opt-125m (dropout 0.1)
  if (o.model == "1.3b") {   // facebook/opt-1.3b's shape
    config.hidden_size = config.word_embed_proj_dim = 2048;
    config.ffn_dim = 8192;
    config.num_attention_heads = 32;
  }
  config.num_hidden_layers = o.layers;
  const models::LlamaConfig llama_config = smollm_135m(o.layers);
  const int64_t vocab = llama ? llama_config.vocab_size : config.vocab_size;
  const int64_t positions =
      llama ? llama_config.max_position_embeddings : config.max_position_embeddings;
  LETHE_CHECK(o.seq <= positions, "bench step: --seq ", o.seq, " exceeds the model's ", positions,
              " positions");
  const int64_t samples = o.batch * (o.steps + 2);  // warm-up, timed steps, GeN's look-ahead
  ScratchDir dir;
  run_in_child(
      [&] {
        omp_set_num_threads(o.threads);
        if (llama)
          write_random_model<models::LlamaModel>(llama_config, dir / "model");
        else
          write_random_model<models::OptModel>(config, dir / "model");
      },
      "bench step: writing the random model");
  write_step_bench_set(dir / "forget.jsonl", 0, samples, vocab, o.seq);
  write_step_bench_set(dir / "retain.jsonl", 1, samples, vocab, o.seq);

  // What `lethe unlearn` (ngdiff) or `lethe finetune` (sft) gets from a recipe; every other key
  // keeps its default.
  const bool sft = o.method == "sft";
  std::map<std::string, std::string> keys = {{"model.path", dir / "model"},
                                             {"model.device", o.device},
                                             {"model.dtype", o.dtype},
                                             {"data.max_length", std::to_string(o.seq)},
                                             {"data.format", "tokenized"},
                                             {"data.shuffle", "false"},
                                             {"data.pairing", "sequential"},
                                             {"trainer.optimizer", "adamw"},
                                             {"trainer.lr", "1e-5"},
                                             {"trainer.weight_decay", "0.01"},
                                             {"trainer.max_grad_norm", "0"},
                                             {"trainer.batch_size", std::to_string(o.batch)},
                                             {"trainer.grad_accum", "1"},
                                             {"trainer.max_steps", std::to_string(1 + o.steps)},
                                             {"trainer.threads", std::to_string(o.threads)},
                                             {"eval.every_steps", "0"},
                                             {"output.dir", dir / "out"}};
  if (sft) {
    keys["data.train"] = dir / "forget.jsonl";
  } else {
    keys["method.name"] = "ngdiff";
    keys["method.auto_lr"] = o.auto_lr ? "true" : "false";
    keys["data.forget"] = dir / "forget.jsonl";
    keys["data.retain"] = dir / "retain.jsonl";
  }
  if (o.lora > 0) {
    keys["lora.enabled"] = "true";
    keys["lora.r"] = std::to_string(o.lora);
    keys["lora.alpha"] = std::to_string(2 * o.lora);
    keys["lora.targets"] = llama ? "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
                                 : "q_proj,k_proj,v_proj,out_proj,fc1,fc2";
  }
  trainers::Config cfg =
      trainers::make_config(keys, sft ? trainers::RunKind::finetune : trainers::RunKind::unlearn);
  std::ostream no_log(nullptr);  // the table below replaces the progress lines
  trainers::TrainerOptions to;
  to.log = &no_log;
  std::vector<double> ms;
  int64_t params = 0;
  double setup_rss_mb = 0;  // after loading: weights, gradient sets, optimizer, data
  {
    trainers::Trainer trainer(std::move(cfg), to);
    setup_rss_mb = current_rss_mb();
    dir.remove("model");  // loaded: 0.5 GB less left behind if the run is killed
    params = trainer.model().parameters().numel();
    trainer.run();
    for (const trainers::StepRecord& r : trainer.steps()) ms.push_back(r.seconds * 1e3);
  }
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const double peak_rss_mb = static_cast<double>(usage.ru_maxrss) / 1024.0;  // ru_maxrss: KiB

  const std::vector<double> timed(ms.begin() + 1, ms.end());
  const int64_t tokens = (sft ? 1 : 2) * o.batch * o.seq;  // (forget + retain) per step
  const double median = median_of(timed);
  const double mean = std::accumulate(timed.begin(), timed.end(), 0.0) / timed.size();
  const bool cuda = o.device.rfind("cuda", 0) == 0;
  const std::string gemm = cuda ? "cuBLAS" : cpu_gemm_description();
  // Model FLOPs per step: 6 per parameter per token (forward 2, backward 4), attention's
  // T²-terms left out (a lower bound; what MFU figures usually count).
  const double tflop_s =
      6.0 * static_cast<double>(params) * static_cast<double>(tokens) / (median / 1e3) / 1e12;
  if (!o.json_only) {
    std::fprintf(
        stderr,
        "lethe bench step: %s, %s shape, %lld layers (%.1fM parameters%s), %d x "
        "%lld x %lld tokens, %s, %s, %d thread(s)\n  GEMMs: %s\n",
        sft ? "sft" : (o.auto_lr ? "ngdiff (GeN every 4 steps)" : "ngdiff (GeN off)"),
        llama ? "SmolLM-135M (Llama)" : ("OPT-" + o.model).c_str(),
        static_cast<long long>(o.layers), static_cast<double>(params) / 1e6,
        o.lora > 0 ? (", LoRA r " + std::to_string(o.lora) + " on every linear").c_str() : "",
        sft ? 1 : 2, static_cast<long long>(o.batch), static_cast<long long>(o.seq),
        o.device.c_str(), o.dtype == "bf16" ? "bf16 matmuls (f32 accumulate)" : "f32", o.threads,
        gemm.c_str());
    for (size_t i = 0; i < ms.size(); ++i)
      std::fprintf(stderr, "  step %2zu %s %10.1f ms\n", i + 1, i == 0 ? "(warm-up)" : "         ",
                   ms[i]);
    std::fprintf(stderr,
                 "  median %.1f ms, mean %.1f ms: %.1f tokens/s, %.3f model TFLOP/s; peak RSS "
                 "%.0f MB (%.0f MB after set-up)\n",
                 median, mean, static_cast<double>(tokens) / (median / 1e3), tflop_s, peak_rss_mb,
                 setup_rss_mb);
  }
  nlohmann::ordered_json line;
  line["bench"] = "step";
  line["impl"] = "lethe";
  line["method"] = o.method;
  line["auto_lr"] = o.auto_lr;
  line["gemm"] = gemm;
  line["device"] = o.device;
  line["model"] = o.model;
  line["dtype"] = o.dtype;
  line["threads"] = o.threads;
  line["layers"] = o.layers;
  line["batch"] = o.batch;
  line["seq"] = o.seq;
  line["lora"] = o.lora;
  line["tokens_per_step"] = tokens;
  line["steps"] = o.steps;
  line["step_ms_median"] = median;
  line["step_ms_min"] = *std::min_element(timed.begin(), timed.end());
  line["step_ms_mean"] = mean;
  line["tokens_per_s"] = static_cast<double>(tokens) / (median / 1e3);
  line["model_tflop_s"] = tflop_s;
  line["peak_rss_mb"] = peak_rss_mb;
  line["setup_rss_mb"] = setup_rss_mb;
  emit(line);
}

// ---- bench head ------------------------------------------------------------------------------
// The LM head's loss and gradients for many tokens, fused (linear_cross_entropy) or unfused
// (linear, then cross_entropy), each in its own child process so that its peak RSS is its own.

struct HeadBenchOptions {
  int64_t tokens = 16384;
  int64_t vocab = 50272, embed = 768;  // opt-125m's head
  int threads = 2;
  bool json_only = false;
};

void run_bench_head(const HeadBenchOptions& o) {
  set_cpu_threads(o.threads, "--threads");  // checked here: the heads run in child processes
  struct Result {
    std::string impl;
    double peak_mb = 0, base_mb = 0, ms = 0;
  };
  std::vector<Result> results;
  for (const char* impl : {"baseline", "fused", "unfused"}) {
    const std::string name = impl;
    // The child writes its time to a pipe; the parent reads the peak RSS from wait4.
    int fds[2];
    LETHE_CHECK(pipe(fds) == 0, "bench head: pipe failed");
    const double peak = run_in_child(
        [&] {
          close(fds[0]);
          omp_set_num_threads(o.threads);
          Tensor x = random_tensor({o.tokens, o.embed}, Device::cpu(), 1.0);
          Tensor w = random_tensor({o.vocab, o.embed}, Device::cpu(), 0.05);
          std::vector<int64_t> t(static_cast<size_t>(o.tokens));
          for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<int64_t>(i * 7919) % o.vocab;
          Tensor targets = Tensor::from_vector(t, {o.tokens}, DType::i64);
          x.set_requires_grad(true);
          w.set_requires_grad(true);
          // Gradients land in existing buffers, as in training (bound gradient sets).
          x.set_grad(Tensor::zeros(x.shape()));
          w.set_grad(Tensor::zeros(w.shape()));
          const auto t0 = std::chrono::steady_clock::now();
          if (name == "fused") {
            linear_cross_entropy(x, w, targets).backward();
          } else if (name == "unfused") {
            CrossEntropyOptions ce;
            ce.reduction = Reduction::none;
            sum(cross_entropy(linear(x, w), targets, ce)).backward();
          }
          const double ms =
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() * 1e3;
          LETHE_CHECK(write(fds[1], &ms, sizeof ms) == sizeof ms, "bench head: pipe write");
          close(fds[1]);
        },
        "bench head: " + name);
    close(fds[1]);
    double ms = 0;
    LETHE_CHECK(read(fds[0], &ms, sizeof ms) == sizeof ms, "bench head: pipe read");
    close(fds[0]);
    results.push_back({name, peak, 0, ms});
  }
  const double base = results[0].peak_mb;
  if (!o.json_only)
    std::fprintf(stderr,
                 "lethe bench head: loss + backward of the LM head, %lld tokens x embed %lld -> "
                 "vocab %lld, f32, %d thread(s); peak RSS of each child, and above the baseline "
                 "(inputs, weights and their gradients only: %.0f MB)\n",
                 static_cast<long long>(o.tokens), static_cast<long long>(o.embed),
                 static_cast<long long>(o.vocab), o.threads, base);
  for (size_t i = 1; i < results.size(); ++i) {
    const Result& r = results[i];
    if (!o.json_only)
      std::fprintf(stderr, "  %-8s %10.1f ms   peak RSS %7.0f MB   above baseline %7.0f MB\n",
                   r.impl.c_str(), r.ms, r.peak_mb, r.peak_mb - base);
    nlohmann::ordered_json line;
    line["bench"] = "head";
    line["impl"] = r.impl;
    line["tokens"] = o.tokens;
    line["vocab"] = o.vocab;
    line["embed"] = o.embed;
    line["threads"] = o.threads;
    line["ms"] = r.ms;
    line["peak_rss_mb"] = r.peak_mb;
    line["above_baseline_mb"] = r.peak_mb - base;
    emit(line);
  }
  if (!o.json_only)
    std::fprintf(stderr, "  fused / unfused memory above baseline: %.3f\n",
                 (results[1].peak_mb - base) / std::max(1.0, results[2].peak_mb - base));
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

  auto so = std::make_shared<StepBenchOptions>();
  CLI::App* step = bench->add_subcommand(
      "step",
      "Time NGDiff unlearning steps (forget + retain batches, default 2 x 4 x 128 tokens) or SFT "
      "steps of the training loop on a random opt-125m- or opt-1.3b-shaped model, on the CPU or "
      "a GPU (table on stderr, JSON Lines on stdout)");
  step->add_option("--method", so->method,
                   "ngdiff (lethe unlearn: forget + retain batches) or sft (lethe finetune: one "
                   "batch)")
      ->check(CLI::IsMember({"ngdiff", "sft"}))
      ->capture_default_str();
  step->add_option("--dtype", so->dtype, "f32, or bf16 (model.dtype: bf16 GEMM operands)")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->capture_default_str();
  step->add_option("--threads", so->threads, "CPU threads (trainer.threads)")
      ->check(integer_in(1, 1024))
      ->capture_default_str();
  step->add_option("--steps", so->steps, "Timed steps after one warm-up step (the median counts)")
      ->check(integer_in(1, 100000))
      ->capture_default_str();
  step->add_flag("--auto-lr", so->auto_lr,
                 "GeN's automatic learning rate on (probes every 4 steps)");
  step->add_option("--layers", so->layers, "Decoder layers (12: opt-125m; fewer for a quick check)")
      ->check(integer_in(1, 96))
      ->capture_default_str();
  step->add_option("--lora", so->lora,
                   "LoRA rank on every linear layer (alpha 2r; 0: full fine-tuning)")
      ->check(CLI::Range(int64_t{0}, int64_t{4096}));
  step->add_option("--device", so->device, "cpu or cuda[:N] (model.device)")
      ->check(device_validator())
      ->capture_default_str();
  step->add_option("--model", so->model,
                   "The random model's shape: 125m or 1.3b (OPT's), smollm-135m (a Llama)")
      ->check(CLI::IsMember({"125m", "1.3b", "smollm-135m"}))
      ->capture_default_str();
  step->add_option("--batch", so->batch, "Samples per micro-batch (forget and retain each)")
      ->check(CLI::Range(int64_t{1}, int64_t{4096}))
      ->capture_default_str();
  step->add_option("--seq", so->seq, "Tokens per sample")
      ->check(CLI::Range(int64_t{2}, int64_t{2048}))
      ->capture_default_str();
  step->add_flag("--json", so->json_only, "JSON Lines only: no table on stderr");
  step->callback([so] { run_bench_step(*so); });

  auto ho = std::make_shared<HeadBenchOptions>();
  CLI::App* head = bench->add_subcommand(
      "head",
      "Peak memory and time of the LM head's loss + backward, fused (linear_cross_entropy) vs "
      "unfused (linear + cross_entropy), each in a child process");
  head->add_option("--tokens", ho->tokens, "Token rows")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24))
      ->capture_default_str();
  head->add_option("--vocab", ho->vocab, "Vocabulary (opt: 50272)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24))
      ->capture_default_str();
  head->add_option("--embed", ho->embed, "Hidden size (opt-125m: 768)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 16))
      ->capture_default_str();
  head->add_option("--threads", ho->threads, "CPU threads")
      ->check(integer_in(1, 1024))
      ->capture_default_str();
  head->add_flag("--json", ho->json_only, "JSON Lines only: no table on stderr");
  head->callback([ho] { run_bench_head(*ho); });
}

}  // namespace lethe::cli
