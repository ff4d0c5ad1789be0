// `lethe demo`: the TOFU methodology at laptop scale — train a tiny OPT from scratch on a subset of
// TOFU authors plus the real-authors and world-facts QA (the target), train a retain-only model,
// unlearn the forget authors with every method, evaluate everything with the TOFU metrics, print
// the table and write demo/report.md with SVG plots. Orchestration only: training, evaluation and
// metrics are the trainers library's.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/io/file_util.h"
#include "engine/io/json.h"
#include "engine/io/opt_config.h"
#include "engine/threads.h"
#include "models/opt/opt_model.h"
#include "tools/cli/cli_util.h"
#include "tools/cli/commands.h"
#include "tools/cli/svg_plot.h"
#include "trainers/config.h"
#include "trainers/eval/runner.h"
#include "trainers/trainer.h"

namespace lethe::cli {

namespace {

namespace fs = std::filesystem;
using trainers::RunKind;

struct TofuDemoOptions {
  std::string out = "demo";
  std::string data = "data";
  bool quick = false;
  int threads = 0;
  uint64_t seed = 0;
};

// The demo's sizes and hyperparameters (docs/demo.md explains the choices).
struct Plan {
  int retain_authors;  // TOFU authors 0.. (20 QA each) kept
  int forget_rows;     // of the 40 QA of TOFU's last 2 authors (forget01)
  int prior_rows;      // of real-authors and of world-facts QA each (the "prior knowledge")
  int eval_rows;       // per TOFU evaluation split
  double target_epochs, target_lr;
  int batch;
  double unlearn_epochs;
  int unlearn_batch;
  int max_new_tokens;
};

Plan plan_for(bool quick) {
  if (quick) return {2, 8, 8, 8, 30, 3e-3, 8, 3, 4, 24};
  return {8, 40, 30, 40, 24, 3e-3, 16, 5, 8, 64};
}

struct Method {
  const char* name;
  double lr;
  std::vector<std::string> extra;
};

const std::vector<Method>& methods() {
  // Learning rates picked on this demo's target (5 epochs each, docs/demo.md has the sweep):
  // the largest that keep most of the target's utility, except GA, which has none.
  static const std::vector<Method> m = {
      {"ga", 2e-4, {}},      {"graddiff", 2e-4, {}},
      {"npo", 5e-4, {}},     {"simnpo", 4e-4, {"method.delta=2", "method.gamma=1"}},
      {"mollm", 1.5e-4, {}}, {"ngdiff", 2e-4, {"trainer.max_grad_norm=0"}},
  };
  return m;
}

std::vector<nlohmann::json> read_jsonl(const fs::path& p) {
  std::vector<nlohmann::json> rows;
  std::istringstream in(io::read_text_file(p.string()));
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) rows.push_back(io::parse_json(line, p.string()));
  return rows;
}

void write_jsonl(const fs::path& p, const std::vector<nlohmann::json>& rows) {
  std::string text;
  for (const nlohmann::json& r : rows) text += r.dump() + "\n";
  io::write_file_atomic(p.string(), text);
}

std::vector<nlohmann::json> head(const std::vector<nlohmann::json>& v, size_t n) {
  return {v.begin(), v.begin() + static_cast<std::ptrdiff_t>(std::min(n, v.size()))};
}

nlohmann::json qa(const nlohmann::json& r) {
  return {{"question", r.at("question")}, {"answer", r.at("answer")}};
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

struct Row {
  std::string name;
  trainers::eval::TofuReport report;
  std::vector<trainers::EvalRecord> curve;
  double seconds = 0;
};

double split_value(const Row& r, trainers::eval::TofuSplit s, int which) {
  for (const auto& x : r.report.splits)
    if (x.split == s) return which == 0 ? x.prob : which == 1 ? x.rouge : x.truth;
  return NAN;
}

std::string f4(double v) {
  char b[32];
  std::snprintf(b, sizeof b, std::isfinite(v) ? "%.3f" : "–", v);
  return b;
}
std::string fq(double v) {
  char b[32];
  if (v < 0) return "–";
  std::snprintf(b, sizeof b, v < 1e-3 ? "%.1e" : "%.3f", v);
  return b;
}

std::string table(const std::vector<Row>& rows) {
  std::ostringstream t;
  t << "| model | forget quality ↑ | model utility ↑ | forget ROUGE-L ↓ | retain ROUGE-L ↑ | "
       "forget "
       "prob ↓ | time |\n|---|---|---|---|---|---|---|\n";
  for (const Row& r : rows) {
    char secs[32];
    std::snprintf(secs, sizeof secs, "%.0f s", r.seconds);
    t << "| " << r.name << " | " << fq(r.report.summary.forget_quality) << " | "
      << f4(r.report.summary.model_utility) << " | "
      << f4(split_value(r, trainers::eval::TofuSplit::forget, 1)) << " | "
      << f4(split_value(r, trainers::eval::TofuSplit::retain, 1)) << " | "
      << f4(split_value(r, trainers::eval::TofuSplit::forget, 0)) << " | " << secs << " |\n";
  }
  return t.str();
}

void run_tofu_demo(const TofuDemoOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  set_cpu_threads(o.threads, "--threads");
  const Plan p = plan_for(o.quick);
  const fs::path out(o.out), dd = out / "data", tofu = fs::path(o.data) / "tofu",
                             demo_files = fs::path(o.data) / "demo";
  io::require_directory(tofu.string(), "--data (TOFU files)");
  io::require_directory(demo_files.string(), "--data (demo model files)");
  fs::create_directories(dd);
  const std::string threads = "trainer.threads=" + std::to_string(o.threads);
  const std::string seed = "trainer.seed=" + std::to_string(o.seed);

  // ---- the data: TOFU authors 0.. as retain, the last 2 (forget01) as forget ----------------
  const std::vector<nlohmann::json> full = read_jsonl(tofu / "full.json");
  std::vector<nlohmann::json> retain, forget, prior, target_train, retain_train;
  for (int i = 0; i < 20 * p.retain_authors; ++i) retain.push_back(qa(full.at(i)));
  for (int i = 0; i < p.forget_rows; ++i) forget.push_back(qa(full.at(3960 + i)));
  for (const char* f : {"real_authors.json", "world_facts.json"})
    for (const nlohmann::json& r : head(read_jsonl(tofu / f), p.prior_rows)) prior.push_back(qa(r));
  for (const auto* part : {&retain, &forget, &prior})
    target_train.insert(target_train.end(), part->begin(), part->end());
  for (const auto* part : {&retain, &prior})
    retain_train.insert(retain_train.end(), part->begin(), part->end());
  write_jsonl(dd / "retain.json", retain);
  write_jsonl(dd / "forget.json", forget);
  write_jsonl(dd / "target_train.json", target_train);
  write_jsonl(dd / "retain_train.json", retain_train);
  // Evaluation splits with paraphrased/perturbed answers, restricted to the demo's authors.
  std::vector<nlohmann::json> retain_eval;
  {
    std::vector<std::string> kept;
    for (const nlohmann::json& r : retain) kept.push_back(r.at("question"));
    for (const nlohmann::json& r : read_jsonl(tofu / "retain_perturbed.json"))
      if (std::find(kept.begin(), kept.end(), r.at("question").get<std::string>()) != kept.end())
        retain_eval.push_back(r);
  }
  write_jsonl(dd / "eval_forget.json", head(read_jsonl(tofu / "forget01_perturbed.json"),
                                            std::min(p.eval_rows, p.forget_rows)));
  write_jsonl(dd / "eval_retain.json", head(retain_eval, p.eval_rows));
  write_jsonl(dd / "eval_real_authors.json",
              head(read_jsonl(tofu / "real_authors_perturbed.json"), p.eval_rows));
  write_jsonl(dd / "eval_world_facts.json",
              head(read_jsonl(tofu / "world_facts_perturbed.json"), p.eval_rows));
  note("demo: " + std::to_string(retain.size()) + " retain QA (" +
       std::to_string(p.retain_authors) + " authors), " + std::to_string(forget.size()) +
       " forget QA (2 authors), " + std::to_string(prior.size()) +
       " real-authors/world-facts QA; data in " + dd.string());

  // ---- a fresh tiny OPT ---------------------------------------------------------------------
  const io::OptConfig config = io::load_opt_config((demo_files / "config.json").string());
  {
    models::OptModel init(config);
    init.init_weights(o.seed);
    init.save((out / "init").string());
    for (const char* f :
         {"vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"})
      fs::copy_file(demo_files / f, out / "init" / f, fs::copy_options::overwrite_existing);
    note("demo: tiny OPT, " + std::to_string(init.parameters().numel()) + " parameters (" +
         std::to_string(config.num_hidden_layers) + " layers, hidden " +
         std::to_string(config.hidden_size) + ", vocabulary " + std::to_string(config.vocab_size) +
         ")");
  }

  auto train = [&](RunKind kind, std::vector<std::string> sets, const std::string& label,
                   std::vector<trainers::EvalRecord>* curve) {
    sets.push_back(threads);
    sets.push_back(seed);
    sets.push_back("data.format=tofu");
    sets.push_back("trainer.log_every=1000000");
    note("demo: " + label);
    trainers::TrainerOptions to;
    std::ostringstream quiet;
    to.log = &quiet;
    trainers::Trainer t(trainers::load_config("", sets, kind), to);
    t.run();
    if (curve) *curve = t.evals();
  };
  // Each evaluation writes its eval.json to eval/<name>: never into a model it reads.
  auto evaluate = [&](const fs::path& model, const std::string& name,
                      const std::string& reference) {
    std::vector<std::string> sets = {
        "model.path=" + model.string(),
        "output.dir=" + (out / "eval" / name).string(),
        "eval.forget=" + (dd / "eval_forget.json").string(),
        "eval.retain=" + (dd / "eval_retain.json").string(),
        "eval.real_authors=" + (dd / "eval_real_authors.json").string(),
        "eval.world_facts=" + (dd / "eval_world_facts.json").string(),
        "eval.max_new_tokens=" + std::to_string(p.max_new_tokens),
        "eval.batch_size=16"};
    if (!reference.empty()) sets.push_back("eval.retain_reference=" + reference);
    return trainers::eval::run_eval(trainers::load_config("", sets, RunKind::eval)).tofu;
  };
  auto finetune_sets = [&](const fs::path& train_file, const fs::path& dir) {
    return std::vector<std::string>{"model.path=" + (out / "init").string(),
                                    "data.train=" + train_file.string(),
                                    "trainer.lr=" + std::to_string(p.target_lr),
                                    "trainer.epochs=" + std::to_string(p.target_epochs),
                                    "trainer.batch_size=" + std::to_string(p.batch),
                                    "trainer.grad_accum=1",
                                    "trainer.scheduler=cosine",
                                    "trainer.warmup_steps=20",
                                    "trainer.weight_decay=0.01",
                                    "output.dir=" + dir.string()};
  };

  std::vector<Row> rows;
  auto t0 = std::chrono::steady_clock::now();
  train(RunKind::finetune, finetune_sets(dd / "target_train.json", out / "target"),
        "training the target on every author (from scratch)", nullptr);
  const double target_secs = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  train(RunKind::finetune, finetune_sets(dd / "retain_train.json", out / "retain"),
        "training the retain-only model (never sees the forget authors)", nullptr);
  const double retain_secs = seconds_since(t0);
  note("demo: evaluating the retain-only model and the target");
  rows.push_back({"retain-only", evaluate(out / "retain", "retain", ""), {}, retain_secs});
  const std::string reference = (out / "eval" / "retain" / "eval.json").string();
  // Forget quality of the retain model itself: its KS test against its own truth ratios is 1.
  rows.back().report = evaluate(out / "retain", "retain-only", reference);
  rows.insert(rows.begin(),
              Row{"target", evaluate(out / "target", "target", reference), {}, target_secs});

  for (const Method& m : methods()) {
    t0 = std::chrono::steady_clock::now();
    std::vector<std::string> sets = {"model.path=" + (out / "target").string(),
                                     "method.name=" + std::string(m.name),
                                     "data.forget=" + (dd / "forget.json").string(),
                                     "data.retain=" + (dd / "retain.json").string(),
                                     "trainer.lr=" + std::to_string(m.lr),
                                     "trainer.epochs=" + std::to_string(p.unlearn_epochs),
                                     "trainer.batch_size=" + std::to_string(p.unlearn_batch),
                                     "trainer.grad_accum=1",
                                     "trainer.scheduler=constant",
                                     "eval.every_steps=1",
                                     "eval.max_samples=40",
                                     "output.dir=" + (out / m.name).string()};
    for (const std::string& e : m.extra) sets.push_back(e);
    Row row{m.name, {}, {}, 0};
    train(RunKind::unlearn, sets, std::string("unlearning with ") + m.name, &row.curve);
    row.report = evaluate(out / m.name, m.name, reference);
    row.seconds = seconds_since(t0);
    rows.push_back(std::move(row));
  }

  // ---- the table, the plots, the report
  // ----------------------------------------------------------
  const std::string tbl = table(rows);
  std::cout << tbl;
  std::vector<PlotSeries> forget_curves, retain_curves, pareto;
  for (const Row& r : rows) {
    if (!r.curve.empty()) {
      PlotSeries f{r.name, {}, {}, false}, g{r.name, {}, {}, false};
      for (const auto& e : r.curve) {
        f.x.push_back(static_cast<double>(e.step));
        f.y.push_back(e.forget_nll);
        g.x.push_back(static_cast<double>(e.step));
        g.y.push_back(e.retain_nll);
      }
      forget_curves.push_back(f);
      retain_curves.push_back(g);
    }
    pareto.push_back({r.name,
                      {std::max(r.report.summary.forget_quality, 1e-30)},
                      {r.report.summary.model_utility},
                      true});
  }
  io::write_file_atomic((out / "forget_loss.svg").string(),
                        svg_plot(forget_curves, {"Forget-set loss while unlearning", "step",
                                                 "forget NLL (higher = forgotten)"}));
  io::write_file_atomic((out / "retain_loss.svg").string(),
                        svg_plot(retain_curves, {"Retain-set loss while unlearning", "step",
                                                 "retain NLL (lower = kept)"}));
  PlotOptions po{"Forget quality vs model utility", "forget quality (KS p-value, log scale)",
                 "model utility"};
  po.log_x = true;
  io::write_file_atomic((out / "forget_quality_vs_utility.svg").string(), svg_plot(pareto, po));

  const double total = seconds_since(start);
  std::ostringstream md;
  md << "# lethe demo: TOFU at laptop scale\n\n"
     << "A tiny OPT (" << config.num_hidden_layers << " layers, hidden " << config.hidden_size
     << ", vocabulary " << config.vocab_size << ") trained from scratch on " << target_train.size()
     << " TOFU QA pairs (" << p.retain_authors << " retain authors, 2 forget authors, "
     << prior.size() << " real-authors/world-facts QA), then unlearned with each method. "
     << "Forget quality is the KS-test p-value of the forget truth ratios against the "
        "retain-only model's; model utility the harmonic mean of probability, ROUGE-L and truth "
        "ratio on the retain, real-authors and world-facts splits ("
     << p.eval_rows << " QA each at most).\n\n"
     << tbl << "\nTotal time " << static_cast<int>(total) << " s" << (o.quick ? " (--quick)" : "")
     << ".\n\n"
     << "![forget quality vs model utility](forget_quality_vs_utility.svg)\n\n"
     << "![forget loss](forget_loss.svg)\n\n![retain loss](retain_loss.svg)\n\n"
     << "Per-sample values and every generated answer: `eval/<model>/eval.json`; training logs: "
        "`<model>/run.json`.\n";
  io::write_file_atomic((out / "report.md").string(), md.str());
  note("demo: report in " + (out / "report.md").string() + "; total " +
       std::to_string(static_cast<int>(total)) + " s");
}

}  // namespace

void add_demo_command(CLI::App& app) {
  auto o = std::make_shared<TofuDemoOptions>();
  CLI::App* cmd = app.add_subcommand(
      "demo",
      "TOFU at laptop scale: train a tiny OPT, unlearn 2 authors with every method, print the "
      "TOFU table and write a report with plots");
  cmd->add_option("--out", o->out, "output directory (default demo)");
  cmd->add_option("--data", o->data, "folder holding tofu/ and demo/ (default data)");
  cmd->add_flag("--quick", o->quick, "a much smaller run (under a minute), for tests");
  cmd->add_option("--threads", o->threads, "CPU threads (0 = all)")->check(integer_in(0, 4096));
  cmd->add_option("--seed", o->seed, "seed of the initial weights, shuffling and dropout")
      ->check(seed_validator());
  cmd->callback([o, cmd] {
    if (cmd->get_subcommands().empty()) run_tofu_demo(*o);
  });
  add_engine_demo_command(*cmd);
}

}  // namespace lethe::cli
