// `lethe demo engine`: the engine's own demo — a tiny causal transformer, built from engine ops
// with flat parameters and AdamW, learns to reverse sequences on the CPU. (`lethe demo` itself is
// the TOFU demo, cmd_demo_tofu.cpp.) Must not reach into kernels; everything goes through
// engine/ops.h and engine/optim.h.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>

#include "engine/autograd.h"
#include "engine/lr_schedule.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/parameters.h"
#include "tools/cli/cli_util.h"
#include "tools/cli/commands.h"

namespace lethe::cli {

namespace {

struct DemoOptions {
  int steps = 150;
  int batch = 32;
  int length = 6;  // symbols to reverse; a sequence is  a1..aL SEP aL..a1
  int vocab = 10;  // symbols 0..vocab-1, SEP = vocab
  int dim = 64, heads = 4, layers = 2;
  double lr = 3e-3;
  uint64_t seed = 1;
};

// A pre-LN decoder-only transformer (the OPT block shape) with learned positions.
class TinyTransformer {
 public:
  TinyTransformer(const DemoOptions& o) : o_(o) {
    int64_t V = o.vocab + 1, T = 2 * o.length + 1, D = o.dim;
    store_.add("embed", {V, D});
    store_.add("pos", {T, D});
    for (int l = 0; l < o.layers; ++l) {
      std::string p = "layers." + std::to_string(l) + ".";
      for (const char* ln : {"ln1", "ln2"}) {
        store_.add(p + ln + ".weight", {D});
        store_.add(p + ln + ".bias", {D});
      }
      for (const char* w : {"q", "k", "v", "o"}) {
        store_.add(p + w + ".weight", {D, D});
        store_.add(p + w + ".bias", {D});
      }
      store_.add(p + "fc1.weight", {4 * D, D});
      store_.add(p + "fc1.bias", {4 * D});
      store_.add(p + "fc2.weight", {D, 4 * D});
      store_.add(p + "fc2.bias", {D});
    }
    store_.add("ln_f.weight", {D});
    store_.add("ln_f.bias", {D});
    store_.allocate(Device::cpu());
    // Init as OPT: normal(0, 0.02) weights, zero biases, unit layer-norm gains.
    NoGradGuard ng;
    uint64_t stream = 0;
    for (const std::string& name : store_.names()) {
      Tensor t = store_.get(name);
      bool is_ln_gain = name.find("ln") != std::string::npos && name.ends_with(".weight");
      if (is_ln_gain) {
        t.fill_(1.0);
      } else if (!name.ends_with(".bias")) {
        t.normal_(o.seed, stream, 0.0, 0.02);
        stream += static_cast<uint64_t>(t.numel());
      }
    }
  }

  ParameterStore& store() { return store_; }

  // ids [B, T] → logits [B, T, V] (the head is tied to the embedding).
  Tensor forward(const Tensor& ids) {
    int64_t B = ids.size(0), T = ids.size(1), D = o_.dim, H = o_.heads;
    Tensor mask = Tensor::ones({B, T}, DType::i64);
    Tensor h = add(embedding(p("embed"), ids), p("pos").slice(0, 0, T));
    for (int l = 0; l < o_.layers; ++l) {
      std::string n = "layers." + std::to_string(l) + ".";
      Tensor x = layer_norm(h, p(n + "ln1.weight"), p(n + "ln1.bias"));
      auto heads = [&](const char* w) {
        return linear(x, p(n + w + ".weight"), p(n + w + ".bias"))
            .reshape({B, T, H, D / H})
            .permute({0, 2, 1, 3})
            .contiguous();
      };
      Tensor q = scale(heads("q"), 1.0 / std::sqrt(static_cast<double>(D / H)));
      Tensor a = attention(q, heads("k"), heads("v"), mask, /*causal=*/true, 1.0);
      a = a.permute({0, 2, 1, 3}).reshape({B, T, D});
      h = add(h, linear(a, p(n + "o.weight"), p(n + "o.bias")));
      x = layer_norm(h, p(n + "ln2.weight"), p(n + "ln2.bias"));
      x = linear(relu(linear(x, p(n + "fc1.weight"), p(n + "fc1.bias"))), p(n + "fc2.weight"),
                 p(n + "fc2.bias"));
      h = add(h, x);
    }
    h = layer_norm(h, p("ln_f.weight"), p("ln_f.bias"));
    return linear(h, p("embed"));
  }

 private:
  Tensor p(const std::string& name) const { return store_.get(name); }
  DemoOptions o_;
  ParameterStore store_;
};

// A batch of reversal problems: inputs a1..aL SEP aL..a(2), targets predict the reversed half.
void make_batch(const DemoOptions& o, uint64_t step, Tensor& ids, Tensor& targets) {
  int64_t L = o.length, T = 2 * L + 1;
  const int64_t n = o.batch * L;
  const std::vector<double> u =
      Tensor::rand({n}, o.seed + 1, 0.0, 1.0, DType::f64, Device::cpu(), step * n)
          .to_double_vector();
  std::vector<int64_t> in(static_cast<size_t>(o.batch * T)), tg(in.size(), -100);
  for (int b = 0; b < o.batch; ++b) {
    std::vector<int64_t> seq(static_cast<size_t>(T));
    for (int i = 0; i < L; ++i) seq[i] = static_cast<int64_t>(u[b * L + i] * o.vocab);
    seq[L] = o.vocab;  // SEP
    for (int i = 0; i < L; ++i) seq[L + 1 + i] = seq[L - 1 - i];
    for (int t = 0; t < T; ++t) in[b * T + t] = seq[t];
    for (int t = L; t < T - 1; ++t) tg[b * T + t] = seq[t + 1];  // position t predicts t + 1
  }
  ids = Tensor::from_vector(in, {o.batch, T});
  targets = Tensor::from_vector(tg, {o.batch, T});
}

// Fraction of target positions whose argmax prediction is right.
double accuracy(const Tensor& logits, const Tensor& targets) {
  auto lg = logits.to_float_vector();
  auto tg = targets.to_int_vector();
  int64_t V = logits.size(-1);
  int64_t right = 0, total = 0;
  for (size_t i = 0; i < tg.size(); ++i) {
    if (tg[i] < 0) continue;
    const float* row = lg.data() + i * V;
    int64_t best = 0;
    for (int64_t v = 1; v < V; ++v)
      if (row[v] > row[best]) best = v;
    right += best == tg[i];
    ++total;
  }
  return total ? static_cast<double>(right) / total : 0.0;
}

void run_demo(const DemoOptions& o) {
  note("demo: a " + std::to_string(o.layers) + "-layer transformer (d=" + std::to_string(o.dim) +
       ") learns to reverse " + std::to_string(o.length) +
       "-symbol sequences; AdamW, warm-up + linear decay");
  TinyTransformer model(o);
  AdamWOptions ao;
  ao.lr = o.lr;
  ao.weight_decay = 0.01;
  AdamW opt(model.store(), ao);
  LrSchedule schedule(LrScheduleKind::linear, o.lr, o.steps / 10, o.steps);
  note("demo: " + std::to_string(model.store().numel()) + " parameters in one flat buffer");

  auto start = std::chrono::steady_clock::now();
  double first_loss = 0, loss_value = 0, acc = 0;
  for (int step = 0; step < o.steps; ++step) {
    Tensor ids, targets;
    make_batch(o, static_cast<uint64_t>(step), ids, targets);
    opt.zero_grad();
    Tensor logits = model.forward(ids);
    Tensor loss = cross_entropy(logits, targets);
    loss.backward();
    double norm = clip_grad_norm(model.store(), 0, 1.0);
    opt.set_lr(schedule.lr_at(step));
    opt.step();
    loss_value = loss.item();
    if (step == 0) first_loss = loss_value;
    if (step % 25 == 0 || step == o.steps - 1) {
      acc = accuracy(logits, targets);
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      char line[160];
      std::snprintf(line, sizeof line,
                    "step %4d/%d  loss %.4f  acc %5.1f%%  |g| %.3f  lr %.2e  %.1fs", step + 1,
                    o.steps, loss_value, 100 * acc, norm, opt.lr(), secs);
      std::cerr << line << "\n";
      nlohmann::ordered_json j = {{"step", step + 1},  {"loss", loss_value}, {"accuracy", acc},
                                  {"grad_norm", norm}, {"lr", opt.lr()},     {"seconds", secs}};
      emit(j);
    }
  }
  // A fresh held-out batch (a step index never used for training).
  Tensor ids, targets;
  make_batch(o, 1000000, ids, targets);
  double held_out;
  {
    NoGradGuard ng;
    held_out = accuracy(model.forward(ids), targets);
  }
  char line[160];
  std::snprintf(line, sizeof line,
                "demo: loss %.3f -> %.3f, held-out accuracy %.1f%% (chance %.1f%%)", first_loss,
                loss_value, 100 * held_out, 100.0 / o.vocab);
  note(line);
  emit(nlohmann::ordered_json{
      {"first_loss", first_loss}, {"final_loss", loss_value}, {"held_out_accuracy", held_out}});
}

}  // namespace

void add_engine_demo_command(CLI::App& demo) {
  auto o = std::make_shared<DemoOptions>();
  CLI::App* cmd = demo.add_subcommand(
      "engine", "Train a tiny transformer on a synthetic task and print the loss falling");
  cmd->add_option("--steps", o->steps, "training steps")->check(integer_in(1, 10000000));
  cmd->add_option("--batch", o->batch, "sequences per step")->check(integer_in(1, 100000));
  cmd->add_option("--length", o->length, "symbols per sequence to reverse")
      ->check(integer_in(1, 64));
  cmd->add_option("--lr", o->lr, "peak learning rate")->check(number_in(0, 10, /*lo_open=*/true));
  cmd->add_option("--seed", o->seed, "random seed")->check(seed_validator());
  cmd->callback([o] { run_demo(*o); });
}

}  // namespace lethe::cli
