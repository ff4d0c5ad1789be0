// `lethe demo`: the TOFU methodology at laptop scale — train a tiny OPT from scratch on a subset of
// TOFU authors plus the real-authors and world-facts QA (the target), train a retain-only model,
// unlearn the forget authors with every method, evaluate everything with the TOFU metrics, print
// the table and write demo/report.md with SVG plots. Orchestration only: training, evaluation and
// metrics are the trainers library's.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/io/file_util.h"
#include "engine/io/json.h"
#include "engine/threads.h"
#include "eval/runner.h"
#include "models/opt/opt_config.h"
#include "models/opt/opt_model.h"
#include "models/tokenizer/files.h"
#include "tools/cli/cli_util.h"
#include "tools/cli/commands.h"
#include "tools/cli/demo_summary.h"
#include "tools/cli/svg_plot.h"
#include "trainers/config.h"
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
  int seeds = 0;   // 0: 3 (1 with --quick)
  int epochs = 0;  // 0: the plan's
  bool sweep = false;
  std::string render;
  std::vector<std::string> methods;  // empty: every method
};

// The demo's sizes and hyperparameters (docs/demo.md explains the choices).
struct Plan {
  int retain_authors;  // TOFU authors 0.. (20 QA each) kept
  int forget_rows;     // of the 40 QA of TOFU's last 2 authors (forget01)
  int prior_rows;      // of real-authors and of world-facts QA each (the "prior knowledge")
  int eval_rows;       // per TOFU evaluation split
  int target_epochs;
  double target_lr;
  int batch;
  double unlearn_epochs;
  int unlearn_batch;
  int max_new_tokens;
};

Plan plan_for(bool quick) {
  if (quick) return {2, 8, 8, 8, 40, 3e-3, 8, 20, 4, 64};
  return {8, 40, 30, 40, 40, 3e-3, 16, 5, 8, 64};
}

// What "trained" means before a table is worth printing (docs/demo.md): greedy answers that
// reproduce the training answers (ROUGE-L recall ≥ 0.95 on every trained split evaluated) and a
// training loss that has flattened out low (the last epoch's mean ≤ 0.1, and less than 0.02 below
// the mean of the epoch five before).
constexpr double kMinRouge = 0.95, kMaxFinalLoss = 0.1, kMaxLateDrop = 0.02;
constexpr int kPlateauEpochs = 5;

struct Method {
  const char* name;
  double lr;
  std::vector<std::string> extra;
  std::vector<double> sweep;  // the rates `lethe demo --sweep` tries
};

const std::vector<Method>& methods() {
  // Learning rates picked by `lethe demo --sweep` with the rule of docs/demo.md (pick_rate).
  static const std::vector<Method> m = {
      {"ga", 1e-4, {}, {1e-4, 2e-4, 4e-4}},
      {"graddiff", 1e-4, {}, {5e-5, 1e-4, 2e-4, 4e-4}},
      {"npo", 1.2e-3, {}, {2e-4, 5e-4, 8e-4, 1.2e-3, 2e-3, 3e-3}},
      {"simnpo",
       1.2e-3,
       {"method.delta=2", "method.gamma=1"},
       {2e-4, 4e-4, 6e-4, 8e-4, 1.2e-3, 2e-3}},
      {"mollm", 2e-4, {}, {5e-5, 1e-4, 2e-4, 4e-4, 8e-4}},
      {"ngdiff", 3e-4, {"trainer.max_grad_norm=0"}, {1e-4, 2e-4, 3e-4, 4e-4}},
  };
  return m;
}

// The methods a run covers: every one, or those --methods names (in the table's order).
std::vector<Method> selected_methods(const std::vector<std::string>& names) {
  std::vector<Method> out;
  for (const Method& m : methods())
    if (names.empty() || std::find(names.begin(), names.end(), m.name) != names.end())
      out.push_back(m);
  return out;
}

// The rule of docs/demo.md: the largest rate whose mean model utility over the seeds keeps at
// least 85 % of the target's; when none does, the smallest rate tried.
constexpr double kKeepUtility = 0.85;
double pick_rate(const std::vector<double>& rates, const std::vector<double>& mean_mu,
                 double target_mu) {
  double pick = -1;
  for (size_t i = 0; i < rates.size(); ++i)
    if (mean_mu[i] >= kKeepUtility * target_mu && rates[i] > pick) pick = rates[i];
  return pick > 0 ? pick : *std::min_element(rates.begin(), rates.end());
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

std::string lr_text(double lr) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", lr);
  return b;
}

double split_value(const eval::TofuReport& r, eval::TofuSplit s, int which) {
  for (const auto& x : r.splits)
    if (x.split == s) return which == 0 ? x.prob : which == 1 ? x.rouge : x.truth;
  return NAN;
}

// One model's row of one seed.
nlohmann::json metrics_of(const eval::TofuReport& r) {
  using eval::TofuSplit;
  auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); };
  return {{"forget_quality", num(r.summary.forget_quality)},
          {"model_utility", num(r.summary.model_utility)},
          {"forget_rouge", num(split_value(r, TofuSplit::forget, 1))},
          {"retain_rouge", num(split_value(r, TofuSplit::retain, 1))},
          {"forget_prob", num(split_value(r, TofuSplit::forget, 0))}};
}

// The mean training loss per epoch.
std::vector<double> epoch_means(const std::vector<trainers::StepRecord>& steps,
                                int64_t steps_per_epoch) {
  std::vector<double> out;
  for (size_t i = 0; i < steps.size(); i += static_cast<size_t>(steps_per_epoch)) {
    double s = 0;
    size_t n = 0;
    for (size_t j = i; j < std::min(steps.size(), i + static_cast<size_t>(steps_per_epoch)); ++j)
      s += steps[j].losses.at(0), ++n;
    out.push_back(s / static_cast<double>(n));
  }
  return out;
}

// The training criterion for one trained model; throws (naming seed, model and every miss).
nlohmann::json check_trained(const std::string& what, uint64_t seed,
                             const std::vector<double>& epochs,
                             const std::vector<std::pair<std::string, double>>& rouges,
                             int planned_epochs) {
  const double last = epochs.back();
  const double before =
      epochs.size() > kPlateauEpochs ? epochs[epochs.size() - 1 - kPlateauEpochs] : epochs.front();
  std::vector<std::string> misses;
  char b[160];
  for (const auto& [split, r] : rouges)
    if (!(r >= kMinRouge)) {
      std::snprintf(b, sizeof b, "%s ROUGE-L %.3f < %.2f", split.c_str(), r, kMinRouge);
      misses.push_back(b);
    }
  if (!(last <= kMaxFinalLoss)) {
    std::snprintf(b, sizeof b, "last epoch's training loss %.3f > %.2f", last, kMaxFinalLoss);
    misses.push_back(b);
  }
  if (!(before - last < kMaxLateDrop)) {
    const int span = static_cast<int>(std::min<size_t>(kPlateauEpochs, epochs.size() - 1));
    std::snprintf(b, sizeof b,
                  "the loss still fell by %.3f over the last %d epochs (plateau: < %.2f)",
                  before - last, span, kMaxLateDrop);
    misses.push_back(b);
  }
  nlohmann::json j = {
      {"final_loss", last}, {"late_drop", before - last}, {"epochs", epochs.size()}};
  for (const auto& [split, r] : rouges) j[split + "_rouge"] = r;
  if (!misses.empty()) {
    std::string m = "demo: seed " + std::to_string(seed) + ": the " + what +
                    " did not reach the training criterion (";
    for (size_t i = 0; i < misses.size(); ++i) m += (i ? "; " : "") + misses[i];
    m += "). A table over a model that has not memorised its training set would mean nothing; "
         "train longer with --epochs (now " +
         std::to_string(planned_epochs) + ") or try another --seed.";
    throw Error(m);
  }
  return j;
}

// Everything shared by the seeds of one demo run.
struct Demo {
  TofuDemoOptions o;
  Plan p;
  fs::path out, dd, demo_files;
  models::OptConfig config;
  size_t target_rows = 0, retain_rows = 0, prior_rows = 0;

  void prepare_data() {
    const fs::path tofu = fs::path(o.data) / "tofu";
    demo_files = fs::path(o.data) / "demo";
    io::require_directory(tofu.string(), "--data (TOFU files)");
    io::require_directory(demo_files.string(), "--data (demo model files)");
    dd = out / "data";
    fs::create_directories(dd);
    // TOFU authors 0.. as retain, the last 2 (forget01) as forget.
    const std::vector<nlohmann::json> full = read_jsonl(tofu / "full.json");
    std::vector<nlohmann::json> retain, forget, prior, target_train, retain_train;
    for (int i = 0; i < 20 * p.retain_authors; ++i) retain.push_back(qa(full.at(i)));
    for (int i = 0; i < p.forget_rows; ++i) forget.push_back(qa(full.at(3960 + i)));
    for (const char* f : {"real_authors.json", "world_facts.json"})
      for (const nlohmann::json& r : head(read_jsonl(tofu / f), p.prior_rows))
        prior.push_back(qa(r));
    for (const auto* part : {&retain, &forget, &prior})
      target_train.insert(target_train.end(), part->begin(), part->end());
    for (const auto* part : {&retain, &prior})
      retain_train.insert(retain_train.end(), part->begin(), part->end());
    write_jsonl(dd / "retain.json", retain);
    write_jsonl(dd / "forget.json", forget);
    write_jsonl(dd / "target_train.json", target_train);
    write_jsonl(dd / "retain_train.json", retain_train);
    target_rows = target_train.size();
    retain_rows = retain_train.size();
    prior_rows = prior.size();
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
    config = models::load_opt_config((demo_files / "config.json").string());
  }

  std::vector<trainers::StepRecord> train(RunKind kind, std::vector<std::string> sets,
                                          uint64_t seed, const std::string& label,
                                          std::vector<trainers::EvalRecord>* curve) {
    sets.push_back("trainer.threads=" + std::to_string(o.threads));
    sets.push_back("trainer.seed=" + std::to_string(seed));
    sets.push_back("data.format=tofu");
    sets.push_back("trainer.log_every=1000000");
    note("demo: " + label);
    trainers::TrainerOptions to;
    std::ostringstream quiet;
    to.log = &quiet;
    trainers::Trainer t(trainers::load_config("", sets, kind), to);
    t.run();
    if (curve) *curve = t.evals();
    return t.steps();
  }

  // Each evaluation writes its eval.json to eval/<name>: never into a model it reads.
  eval::TofuReport evaluate(const fs::path& dir, const fs::path& model, const std::string& name,
                            const std::string& reference) {
    std::vector<std::string> sets = {
        "model.path=" + model.string(),
        "output.dir=" + (dir / "eval" / name).string(),
        "eval.forget=" + (dd / "eval_forget.json").string(),
        "eval.retain=" + (dd / "eval_retain.json").string(),
        "eval.real_authors=" + (dd / "eval_real_authors.json").string(),
        "eval.world_facts=" + (dd / "eval_world_facts.json").string(),
        "eval.max_new_tokens=" + std::to_string(p.max_new_tokens),
        "eval.batch_size=16"};
    if (!reference.empty()) sets.push_back("eval.retain_reference=" + reference);
    return eval::run_eval(trainers::load_config("", sets, RunKind::eval)).tofu;
  }

  int epochs() const { return o.epochs > 0 ? o.epochs : p.target_epochs; }

  std::vector<std::string> finetune_sets(const fs::path& dir, const fs::path& train_file,
                                         const fs::path& to) const {
    return {"model.path=" + (dir / "init").string(), "data.train=" + train_file.string(),
            "trainer.lr=" + std::to_string(p.target_lr),
            "trainer.epochs=" + std::to_string(epochs()),
            "trainer.batch_size=" + std::to_string(p.batch), "trainer.grad_accum=1",
            "trainer.scheduler=cosine",
            // 20 warm-up steps, fewer when --epochs makes the run short
            "trainer.warmup_steps=" + std::to_string(std::min<int64_t>(
                                          20, epochs() * steps_per_epoch(rows_of(train_file)) / 2)),
            "trainer.weight_decay=0.01", "output.dir=" + to.string()};
  }

  size_t rows_of(const fs::path& train_file) const {
    return train_file.filename() == "target_train.json" ? target_rows : retain_rows;
  }

  int64_t steps_per_epoch(size_t rows) const {
    return static_cast<int64_t>((rows + static_cast<size_t>(p.batch) - 1) /
                                static_cast<size_t>(p.batch));
  }

  // One seed: a fresh tiny OPT, the target and the retain-only model trained and checked against
  // the criterion, evaluated; returns their rows and the training record. `reference` gets the
  // retain-only model's eval.json (the reference of forget quality).
  std::vector<nlohmann::json> train_and_check(uint64_t seed, const fs::path& dir,
                                              nlohmann::json& training, std::string& reference) {
    fs::create_directories(dir);
    {
      models::OptModel init(config);
      init.init_weights(seed);
      init.save((dir / "init").string());
      tokenizer::copy_tokenizer_files(demo_files.string(), (dir / "init").string());
    }
    const std::string s = "seed " + std::to_string(seed) + ": ";
    auto t0 = std::chrono::steady_clock::now();
    const auto target_steps =
        train(RunKind::finetune, finetune_sets(dir, dd / "target_train.json", dir / "target"), seed,
              s + "training the target on every author (from scratch)", nullptr);
    const double target_secs = seconds_since(t0);
    t0 = std::chrono::steady_clock::now();
    const auto retain_steps =
        train(RunKind::finetune, finetune_sets(dir, dd / "retain_train.json", dir / "retain"), seed,
              s + "training the retain-only model (never sees the forget authors)", nullptr);
    const double retain_secs = seconds_since(t0);
    note("demo: " + s + "evaluating the retain-only model and the target");
    const auto retain_first = evaluate(dir, dir / "retain", "retain", "");
    reference = (dir / "eval" / "retain" / "eval.json").string();
    // Forget quality of the retain model itself: its KS test against its own truth ratios is 1.
    const auto retain_report = evaluate(dir, dir / "retain", "retain-only", reference);
    const auto target_report = evaluate(dir, dir / "target", "target", reference);
    using eval::TofuSplit;
    training = {
        {"seed", seed},
        {"target",
         check_trained("target", seed, epoch_means(target_steps, steps_per_epoch(target_rows)),
                       {{"forget", split_value(target_report, TofuSplit::forget, 1)},
                        {"retain", split_value(target_report, TofuSplit::retain, 1)}},
                       epochs())},
        {"retain_only",
         check_trained("retain-only model", seed,
                       epoch_means(retain_steps, steps_per_epoch(retain_rows)),
                       {{"retain", split_value(retain_report, TofuSplit::retain, 1)}}, epochs())}};
    nlohmann::json t = metrics_of(target_report), r = metrics_of(retain_report);
    t["seconds"] = target_secs;
    r["seconds"] = retain_secs;
    return {t, r};
  }

  nlohmann::json unlearn(uint64_t seed, const fs::path& dir, const Method& m, double lr,
                         const std::string& name, const std::string& reference) {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::string> sets = {"model.path=" + (dir / "target").string(),
                                     "method.name=" + std::string(m.name),
                                     "data.forget=" + (dd / "forget.json").string(),
                                     "data.retain=" + (dd / "retain.json").string(),
                                     "trainer.lr=" + lr_text(lr),
                                     "trainer.epochs=" + std::to_string(p.unlearn_epochs),
                                     "trainer.batch_size=" + std::to_string(p.unlearn_batch),
                                     "trainer.grad_accum=1",
                                     "trainer.scheduler=constant",
                                     "eval.every_steps=1",
                                     "eval.max_samples=40",
                                     "output.dir=" + (dir / name).string()};
    for (const std::string& e : m.extra) sets.push_back(e);
    std::vector<trainers::EvalRecord> curve;
    train(RunKind::unlearn, sets, seed,
          "seed " + std::to_string(seed) + ": unlearning with " + m.name + " (lr " + lr_text(lr) +
              ")",
          &curve);
    nlohmann::json row = metrics_of(evaluate(dir, dir / name, name, reference));
    nlohmann::json c = {{"step", nlohmann::json::array()},
                        {"forget_nll", nlohmann::json::array()},
                        {"retain_nll", nlohmann::json::array()}};
    for (const auto& e : curve) {
      c["step"].push_back(e.step);
      c["forget_nll"].push_back(e.forget_nll);
      c["retain_nll"].push_back(e.retain_nll);
    }
    row["curve"] = c;
    row["seconds"] = seconds_since(t0);
    return row;
  }
};

// Gathers per-seed rows into summary.json's per-model lists.
void add_row(nlohmann::json& model, const nlohmann::json& row) {
  for (const std::string& k : demo_metrics()) model[k].push_back(row.at(k));
  model["seconds"].push_back(row.at("seconds"));
  if (row.contains("curve")) model["curves"].push_back(row["curve"]);
}

nlohmann::json new_model(const std::string& name) {
  nlohmann::json m = {{"name", name}};
  for (const std::string& k : demo_metrics()) m[k] = nlohmann::json::array();
  m["seconds"] = nlohmann::json::array();
  return m;
}

double mean_of(const nlohmann::json& list) {
  double s = 0;
  for (const nlohmann::json& v : list) s += v.is_number() ? v.get<double>() : NAN;
  return s / static_cast<double>(list.size());
}

void run_sweep(Demo& d, const std::vector<uint64_t>& seeds,
               const std::vector<std::string>& references, const nlohmann::json& target) {
  const double target_mu = mean_of(target.at("model_utility"));
  nlohmann::json sweep = {{"seeds", seeds},
                          {"target_model_utility", target_mu},
                          {"keep_utility", kKeepUtility},
                          {"methods", nlohmann::json::array()}};
  std::ostringstream md;
  md << "| method | lr | forget quality | model utility | MU / target |\n|---|---|---|---|---|\n";
  for (const Method& m : selected_methods(d.o.methods)) {
    std::vector<double> mus;
    nlohmann::json rows = nlohmann::json::array();
    for (double lr : m.sweep) {
      nlohmann::json model = new_model(m.name);
      for (size_t i = 0; i < seeds.size(); ++i) {
        const fs::path dir = d.out / ("seed-" + std::to_string(seeds[i]));
        add_row(model,
                d.unlearn(seeds[i], dir, m, lr, "sweep/" + std::string(m.name) + "-" + lr_text(lr),
                          references[i]));
      }
      model.erase("curves");
      model["lr"] = lr;
      mus.push_back(mean_of(model["model_utility"]));
      rows.push_back(model);
    }
    const double pick = pick_rate(m.sweep, mus, target_mu);
    for (size_t i = 0; i < rows.size(); ++i) {
      nlohmann::json one = {{"seeds", seeds}, {"models", {rows[i]}}};
      const std::string line = demo_table(one);
      // The table's row, without its name and ROUGE/prob columns: FQ and MU cells.
      const std::string row = line.substr(line.rfind("\n|", line.size() - 2) + 1);
      std::vector<std::string> cells;
      std::istringstream in(row);
      std::string c;
      while (std::getline(in, c, '|')) cells.push_back(c);
      char ratio[32];
      std::snprintf(ratio, sizeof ratio, "%.2f", mus[i] / target_mu);
      const bool picked = m.sweep[i] == pick;
      md << "| " << m.name << " | " << (picked ? "**" : "") << lr_text(m.sweep[i])
         << (picked ? "**" : "") << " |" << cells.at(2) << "|" << cells.at(3) << "| " << ratio
         << " |\n";
    }
    sweep["methods"].push_back(
        {{"name", m.name}, {"picked", pick}, {"demo_lr", m.lr}, {"rates", rows}});
    if (pick != m.lr)
      note("demo: sweep: the rule picks lr " + lr_text(pick) + " for " + m.name +
           "; the demo uses " + lr_text(m.lr));
  }
  io::write_json_file((d.out / "sweep.json").string(), sweep);
  io::write_file_atomic((d.out / "sweep.md").string(), md.str());
  std::cout << md.str();
}

// The command that reproduces a summary (recorded in it).
std::string generated_by(const TofuDemoOptions& o, int nseeds) {
  std::string c = "lethe demo";
  if (o.quick) c += " --quick";
  c += " --seed " + std::to_string(o.seed) + " --seeds " + std::to_string(nseeds);
  if (o.epochs > 0) c += " --epochs " + std::to_string(o.epochs);
  if (!o.methods.empty()) {
    c += " --methods ";
    for (size_t i = 0; i < o.methods.size(); ++i) c += (i ? "," : "") + o.methods[i];
  }
  return c;
}

void run_tofu_demo(const TofuDemoOptions& opts) {
  if (!opts.render.empty()) {
    const nlohmann::json summary = io::read_json_file(opts.render);
    try {
      std::cout << demo_table(summary);
    } catch (const nlohmann::json::exception& e) {
      throw Error(opts.render + ": not a demo summary.json (" + e.what() + ")");
    }
    return;
  }
  const auto start = std::chrono::steady_clock::now();
  const int nseeds = opts.seeds > 0 ? opts.seeds : opts.quick ? 1 : 3;
  if (opts.seed > std::numeric_limits<uint64_t>::max() - static_cast<uint64_t>(nseeds - 1))
    throw UsageError("--seed " + std::to_string(opts.seed) + " with --seeds " +
                     std::to_string(nseeds) + ": the seeds would wrap around");
  set_cpu_threads(opts.threads, "--threads");
  Demo d;
  d.o = opts;
  d.p = plan_for(opts.quick);
  d.out = fs::path(opts.out);
  d.prepare_data();
  note("demo: tiny OPT (" + std::to_string(d.config.num_hidden_layers) + " layers, hidden " +
       std::to_string(d.config.hidden_size) + ", vocabulary " +
       std::to_string(d.config.vocab_size) + "), " + std::to_string(nseeds) + " seed" +
       (nseeds > 1 ? "s" : "") + " from " + std::to_string(opts.seed));

  std::vector<uint64_t> seeds;
  for (int i = 0; i < nseeds; ++i) seeds.push_back(opts.seed + static_cast<uint64_t>(i));
  nlohmann::json target = new_model("target"), retain = new_model("retain-only");
  nlohmann::json training = nlohmann::json::array();
  std::vector<std::string> references;
  for (uint64_t seed : seeds) {
    nlohmann::json tr;
    std::string reference;
    const auto rows =
        d.train_and_check(seed, d.out / ("seed-" + std::to_string(seed)), tr, reference);
    add_row(target, rows[0]);
    add_row(retain, rows[1]);
    training.push_back(tr);
    references.push_back(reference);
  }
  if (opts.sweep) {
    run_sweep(d, seeds, references, target);
    return;
  }
  nlohmann::json models = {target, retain};
  for (const Method& m : selected_methods(opts.methods)) {
    nlohmann::json model = new_model(m.name);
    model["lr"] = m.lr;
    for (size_t i = 0; i < seeds.size(); ++i)
      add_row(model, d.unlearn(seeds[i], d.out / ("seed-" + std::to_string(seeds[i])), m, m.lr,
                               m.name, references[i]));
    models.push_back(model);
  }
  nlohmann::json summary = {{"generated_by", generated_by(opts, nseeds)},
                            {"quick", opts.quick},
                            {"seeds", seeds},
                            {"criterion",
                             {{"min_rouge", kMinRouge},
                              {"max_final_loss", kMaxFinalLoss},
                              {"max_late_drop", kMaxLateDrop},
                              {"plateau_epochs", kPlateauEpochs}}},
                            {"training", training},
                            {"models", models}};
  io::write_json_file((d.out / "summary.json").string(), summary);

  // ---- the table, the plots, the report
  const std::string tbl = demo_table(summary);
  std::cout << tbl;
  write_demo_plots(summary, d.out.string());
  const double total = seconds_since(start);
  std::ostringstream md;
  md << "# lethe demo: TOFU at laptop scale\n\n"
     << "A tiny OPT (" << d.config.num_hidden_layers << " layers, hidden " << d.config.hidden_size
     << ", vocabulary " << d.config.vocab_size << ") trained from scratch on " << d.target_rows
     << " TOFU QA pairs (" << d.p.retain_authors << " retain authors, 2 forget authors, "
     << d.prior_rows << " real-authors/world-facts QA), then unlearned with each method, for "
     << nseeds << " seed" << (nseeds > 1 ? "s" : "") << " (" << summary["seeds"].dump() << "). "
     << "Forget quality is the KS-test p-value of the forget truth ratios against the "
        "retain-only model's; model utility the harmonic mean of probability, ROUGE-L and truth "
        "ratio on the retain, real-authors and world-facts splits ("
     << d.p.eval_rows << " QA each at most)."
     << (nseeds > 1 ? " Cells are mean ± sample standard deviation over the seeds; forget "
                      "quality is the median [min, max]."
                    : "")
     << "\n\n"
     << tbl << "\nTotal time " << static_cast<int>(total) << " s"
     << (opts.quick ? " (--quick)" : "") << ".\n\n"
     << "![forget quality vs model utility](forget_quality_vs_utility.svg)\n\n"
     << "![forget loss](forget_loss.svg)\n\n![retain loss](retain_loss.svg)\n\n"
     << "Per-seed values: `summary.json`; per-sample values and every generated answer: "
        "`seed-<k>/eval/<model>/eval.json`; training logs: `seed-<k>/<model>/run.json`.\n";
  io::write_file_atomic((d.out / "report.md").string(), md.str());
  note("demo: report in " + (d.out / "report.md").string() + "; total " +
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
  cmd->add_option("--seed", o->seed, "the first seed (initial weights, shuffling, dropout)")
      ->check(seed_validator());
  cmd->add_option("--seeds", o->seeds, "how many seeds, from --seed on (default 3; 1 with --quick)")
      ->check(integer_in(1, 100));
  cmd->add_option("--epochs", o->epochs,
                  "epochs of the target and retain-only training (default 40)")
      ->check(integer_in(1, 100000));
  cmd->add_flag("--sweep", o->sweep,
                "instead of the table: each method's learning-rate sweep (docs/demo.md)");
  std::vector<std::string> names;
  for (const Method& m : methods()) names.push_back(m.name);
  cmd->add_option("--methods", o->methods, "only these methods (default: all six)")
      ->delimiter(',')
      ->check(CLI::IsMember(names));
  cmd->add_option("--render", o->render,
                  "print the table of a summary.json an earlier run wrote, and stop");
  cmd->callback([o, cmd] {
    if (cmd->get_subcommands().empty()) run_tofu_demo(*o);
  });
  add_engine_demo_command(*cmd);
}

}  // namespace lethe::cli
