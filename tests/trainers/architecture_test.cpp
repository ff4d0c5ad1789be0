// The trainers floor's shape (docs/architecture.md): a method is one file — proved by a toy method
// that exists only in this test file, registers itself and trains through the shared loop — and a
// run's records have one schema, so a resumed run's run.json equals the uninterrupted one's.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/io/json.h"
#include "tests/common/temp_dir.h"
#include "tests/trainers/tiny_run.h"
#include "trainers/classifier.h"
#include "trainers/config.h"
#include "trainers/methods/method.h"
#include "trainers/run_record.h"
#include "trainers/trainer.h"

namespace lethe::trainers {
namespace {

std::vector<std::string> base_sets(const std::string& out) {
  return tiny_run_sets(out);
}

// ---- a method in one file ----------------------------------------------------------------------

// "toy": descent on the retain NLL and ascent on the forget NLL, its rule the recipe's
// method.toy_weight on the retain gradient and 1 − that on the forget gradient, and a hook that
// halves the rate on every step and reports it. Everything a method file holds, here alone.
MethodSpec toy_method() {
  MethodSpec s;
  s.name = "toy";
  s.summary = "a test method";
  s.keys = {{"toy_weight", KeyType::num, "0.25", "share of the retain gradient", "", 0, 1},
            reduction_key()};
  s.build = [](const MethodParams& p) {
    Method m;
    m.objectives = {{"forget_nll", BatchKind::forget, LossKind::nll, -1.0, nll_reduction(p)},
                    {"retain_nll", BatchKind::retain, LossKind::nll, 1.0, nll_reduction(p)}};
    const double w = report(m, p, "toy_weight");
    m.rule = {"toy", [w](const std::vector<double>& gram) {
                return combine_weighted(gram, {1.0 - w, w});
              }};
    m.hooks.report_key = "toy";
    m.hooks.before_update = [](StepAccess& step, nlohmann::ordered_json& report) {
      const double before = step.lr();
      step.set_lr(before / 2);
      report = {{"lr_before", before},
                {"forget_probe", step.probe_nll(BatchKind::forget, Reduction::token_mean)}};
    };
    return m;
  };
  return s;
}

void register_toy_once() {
  if (find_method("toy") == nullptr) register_method(toy_method());
}

TEST(MethodRegistry, AToyMethodInTheTestTreeTrainsThroughTheSharedLoop) {
  register_toy_once();
  // The schema and --keys read the method's keys from its spec.
  const std::string keys = describe_schema();
  EXPECT_NE(keys.find("method.toy_weight  (number)  share of the retain gradient [toy 0.25]"),
            std::string::npos)
      << keys;
  EXPECT_NE(keys.find("ga|graddiff|ga_mismatch_kl|npo|simnpo|mollm|ngdiff|toy"), std::string::npos)
      << keys;

  const std::string out = lethe::testing::scratch_dir("arch", "toy");
  std::vector<std::string> sets = base_sets(out);
  sets.push_back("method.name=toy");
  sets.push_back("method.toy_weight=0.75");
  sets.push_back("trainer.max_steps=3");
  std::ostringstream log;
  TrainerOptions o;
  o.log = &log;
  Trainer t(load_config("", sets, RunKind::unlearn), o);
  EXPECT_EQ(t.run(), 3);
  ASSERT_EQ(t.steps().size(), 3u);
  for (const StepRecord& r : t.steps()) {
    EXPECT_EQ(r.weights, (std::vector<double>{0.25, 0.75}));
    // The hook halved the constant rate 0.01 on every step (the schedule follows it).
    ASSERT_TRUE(r.hook.is_object());
    EXPECT_DOUBLE_EQ(r.lr, r.hook.at("lr_before").get<double>() / 2);
    EXPECT_GT(r.hook.at("forget_probe").get<double>(), 0.0);
  }
  EXPECT_DOUBLE_EQ(t.steps()[0].lr, 0.005);
  EXPECT_DOUBLE_EQ(t.steps()[2].lr, 0.00125);
  const nlohmann::json run = io::read_json_file(out + "/run.json");
  EXPECT_EQ(run.at("method").at("name"), "toy");
  EXPECT_EQ(run.at("method").at("parameters").at("method.toy_weight"), 0.75);
  EXPECT_TRUE(run.at("steps").at(0).contains("toy")) << run.at("steps").at(0).dump();
}

TEST(MethodRegistry, AMethodsKeysAreCheckedAgainstItsSpec) {
  register_toy_once();
  const std::string out = lethe::testing::scratch_dir("arch", "keys");
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> sets = base_sets(out);
    sets.insert(sets.end(), extra.begin(), extra.end());
    return sets;
  };
  // Out of the spec's range: refused as the recipe loads, naming the key.
  try {
    load_config("", with({"method.name=toy", "method.toy_weight=2"}), RunKind::unlearn);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("method.toy_weight = 2 is out of range [0, 1]"),
              std::string::npos)
        << e.what();
  }
  // Another method's key: refused naming the method's own keys.
  try {
    Trainer t(load_config("", with({"method.name=ga", "method.toy_weight=0.5"}), RunKind::unlearn));
    FAIL() << "no error";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find(
                  "method.toy_weight is not a parameter of ga (its parameters: method.reduction)"),
              std::string::npos)
        << e.what();
  }
  // A second method of the same name, or a shared key of another type, is refused.
  EXPECT_THROW(register_method(toy_method()), Error);
  MethodSpec clash = toy_method();
  clash.name = "toy_clash";
  clash.keys[0].type = KeyType::integer;
  EXPECT_THROW(register_method(clash), Error);
  EXPECT_EQ(find_method("toy_clash"), nullptr);
}

// ---- one schema for run.json and the checkpoint ------------------------------------------------

// run.json without what may differ between two runs of one recipe: timings, and the keys that
// name the output folder and the resume flag.
nlohmann::json comparable(nlohmann::json run) {
  for (nlohmann::json& s : run.at("steps")) {
    s.erase("seconds");
    s.erase("comm_seconds");
  }
  run.at("config").erase("output.dir");
  run.at("config").erase("trainer.resume");
  return run;
}

struct ResumeCase {
  std::string name;
  std::vector<std::string> sets;
};

class RunRecord : public ::testing::TestWithParam<ResumeCase> {};

// Stopped after step 2 and resumed, the run's run.json equals the uninterrupted one's: every step
// row (GeN's probe, MGDA's solution and exclusions), every evaluation row (the TOFU columns the
// eval hook measured) and the best step — nothing the checkpoint held is lost.
TEST_P(RunRecord, AResumedRunsRunJsonEqualsTheUninterruptedOne) {
  const ResumeCase& c = GetParam();
  int calls = 0;
  auto run = [&](const std::string& out, int64_t stop_after, bool resume) {
    std::vector<std::string> sets = base_sets(out);
    sets.insert(sets.end(), c.sets.begin(), c.sets.end());
    for (const char* s : {"trainer.max_steps=5", "trainer.seed=3", "eval.every_steps=2",
                          "eval.metrics=tofu", "output.keep=best", "eval.select=model_utility"})
      sets.push_back(s);
    if (resume) sets.push_back("trainer.resume=true");
    std::ostringstream log;
    TrainerOptions o;
    o.log = &log;
    o.stop_after = stop_after;
    // A stand-in for the eval layer's TOFU hook: numbers that depend on the weights.
    o.evaluate = [&calls](models::CausalLM& model) {
      ++calls;
      const double w = model.lm_head_weight().to_double_vector().at(3);
      StepMetrics m;
      m.model_utility = 0.5 + w;
      m.forget_quality = 0.01;
      m.forget_rouge = 0.5 - w;
      return m;
    };
    Trainer t(load_config("", sets, RunKind::unlearn), o);
    t.run();
  };
  const std::string whole = lethe::testing::scratch_dir("record", c.name + "_whole");
  const std::string split = lethe::testing::scratch_dir("record", c.name + "_split");
  run(whole, 0, false);
  run(split, 2, false);
  run(split, 0, true);
  EXPECT_GT(calls, 0);
  const nlohmann::json a = comparable(io::read_json_file(whole + "/run.json"));
  const nlohmann::json b = comparable(io::read_json_file(split + "/run.json"));
  EXPECT_EQ(a, b) << "uninterrupted:\n" << a.dump(1) << "\nresumed:\n" << b.dump(1);
  // What the case is about is in the record.
  ASSERT_EQ(a.at("steps").size(), 5u);
  ASSERT_EQ(a.at("eval").size(), 4u);  // steps 0, 2, 4, 5
  EXPECT_TRUE(a.at("eval").at(1).contains("model_utility"));
  EXPECT_TRUE(a.contains("best_step"));
  const std::string key = c.name == "mollm" ? "solution" : "gen";
  bool recorded = false;
  for (const nlohmann::json& s : a.at("steps")) recorded = recorded || s.contains(key);
  EXPECT_TRUE(recorded) << key << " is in no step row: " << a.at("steps").dump();
}

// The fields the checkpoint now carries back (a rule's solution, comm_seconds, a hook's report, the
// TOFU columns of an evaluation) are checked like the others: a wrong type or range names the
// field and the file.
TEST(RunRecordFields, BrokenFieldsNameThemselves) {
  const nlohmann::json good = {{"state",
                                {{"steps_done", 1},
                                 {"optimizer_steps", 1},
                                 {"base_lr", 0.01},
                                 {"best_score", nullptr},
                                 {"best_step", -1}}},
                               {"steps",
                                {{{"step", 1},
                                  {"lr", 0.01},
                                  {"loss", {{"forget_nll", 3.0}, {"retain_nll", 2.0}}},
                                  {"grad_norm", {{"forget_nll", 1.0}, {"retain_nll", 0.5}}},
                                  {"weight", {{"forget_nll", 1.0}, {"retain_nll", 1.0}}},
                                  {"solution", "interior"},
                                  {"direction_norm", 1.2},
                                  {"tokens", 30.0},
                                  {"seconds", 0.1},
                                  {"comm_seconds", 0.01},
                                  {"gen", {{"accepted", true}, {"lr_after", 0.011}}}}}},
                               {"eval",
                                {{{"step", 0},
                                  {"forget_nll", 3.0},
                                  {"retain_nll", 2.0},
                                  {"model_utility", 0.5},
                                  {"forget_rouge", 0.9},
                                  {"forget_quality", nullptr}}}}};
  RecordLayout layout({"forget_nll", "retain_nll"});
  layout.hook_key = "gen";
  const CheckpointState cs = parse_checkpoint_state(good, "ts.json", 3, layout);
  ASSERT_EQ(cs.steps.size(), 1u);
  ASSERT_EQ(cs.evals.size(), 1u);
  EXPECT_EQ(cs.steps[0].solution, "interior");
  EXPECT_EQ(cs.steps[0].comm_seconds, 0.01);
  EXPECT_EQ(cs.steps[0].hook.at("lr_after"), 0.011);
  EXPECT_EQ(cs.evals[0].model_utility, 0.5);
  EXPECT_EQ(cs.evals[0].forget_rouge, 0.9);
  EXPECT_EQ(cs.evals[0].forget_quality, -1);  // null: not measured

  struct Case {
    const char* name;
    std::function<void(nlohmann::json&)> edit;
    std::string fragment;
  };
  const std::vector<Case> cases = {
      {"solution", [](nlohmann::json& j) { j["steps"][0]["solution"] = 3; },
       "steps[0].solution must be a string"},
      {"comm_seconds", [](nlohmann::json& j) { j["steps"][0]["comm_seconds"] = -1.0; },
       "steps[0].comm_seconds must be a finite number >= 0, got -1.0"},
      {"hook", [](nlohmann::json& j) { j["steps"][0]["gen"] = 5; },
       "steps[0].gen must be an object"},
      {"model_utility", [](nlohmann::json& j) { j["eval"][0]["model_utility"] = "high"; },
       "eval[0].model_utility must be a finite number"},
      {"forget_rouge", [](nlohmann::json& j) { j["eval"][0].erase("forget_rouge"); },
       "eval[0].forget_rouge is missing"},
      {"forget_quality", [](nlohmann::json& j) { j["eval"][0]["forget_quality"] = -0.5; },
       "eval[0].forget_quality must be a finite number >= 0, got -0.5"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    nlohmann::json bad = good;
    c.edit(bad);
    try {
      parse_checkpoint_state(bad, "ts.json", 3, layout);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("ts.json"), std::string::npos) << what;
      EXPECT_NE(what.find(c.fragment), std::string::npos) << what;
    }
  }
}

// eval.metrics: tofu is measured by the eval layer: a Trainer built without its hook says so
// before any step instead of recording nothing.
TEST(RunRecordFields, TofuMetricsWithoutTheEvalHookAreRefused) {
  std::vector<std::string> sets = base_sets(lethe::testing::scratch_dir("arch", "nohook"));
  for (const char* s :
       {"method.name=graddiff", "trainer.max_steps=1", "eval.every_steps=1", "eval.metrics=tofu"})
    sets.push_back(s);
  std::ostringstream log;
  TrainerOptions o;
  o.log = &log;
  try {
    Trainer t(load_config("", sets, RunKind::unlearn), o);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("eval.metrics: tofu is measured by the eval layer"),
              std::string::npos)
        << e.what();
  }
}

// ---- the classifier through the shared loop ----------------------------------------------------

// Eight labelled texts (apples 0, knives 1) on the tiny TOFU fixture model, which has a tokenizer.
std::vector<std::string> classifier_sets(const std::string& out) {
  static const std::string data =
      lethe::testing::scratch_dir("classifier_loop", "data") + "/labelled.jsonl";
  {
    std::ofstream f(data);
    for (int i = 0; i < 4; ++i) {
      f << R"({"prompt": "How do I bake an apple pie )" << i
        << R"(?", "response": "Slice the apples.", "label": 0})" << '\n';
      f << R"({"text": "How do I hurt someone )" << i << R"(? Take a knife.", "label": 1})" << '\n';
    }
  }
  return {"model.path=tests/trainers/fixtures/tofu_eval/model",
          "model.head=classifier",
          "data.format=jsonl",
          "data.train=" + data,
          "trainer.lr=1e-2",
          "trainer.epochs=2",  // 3 micro-batches of 3, 3 and 2 texts per epoch: 6 steps
          "trainer.batch_size=3",
          "trainer.grad_accum=1",
          "trainer.warmup_steps=1",
          "trainer.seed=5",
          "trainer.threads=2",
          "eval.every_steps=2",
          "eval.retain=" + data,
          "output.keep=best",
          "output.dir=" + out};
}

// lethe finetune with model.head: classifier runs through the shared loop, so it resumes like any
// run: stopped after step 2 and resumed, the weights (the score head included) and run.json (step
// rows, held-out evaluations, the best step, the training accuracy) equal the uninterrupted run's.
TEST(ClassifierLoop, AResumedRunEqualsTheUninterruptedOne) {
  auto run = [](const std::string& out, int64_t stop_after, bool resume) {
    std::vector<std::string> sets = classifier_sets(out);
    if (resume) sets.push_back("trainer.resume=true");
    std::ostringstream log;
    return train_classifier(load_config("", sets, RunKind::finetune), log, false, stop_after);
  };
  const std::string whole = lethe::testing::scratch_dir("classifier_loop", "whole");
  const std::string split = lethe::testing::scratch_dir("classifier_loop", "split");
  const ClassifierRun a = run(whole, 0, false);
  const ClassifierRun stopped = run(split, 2, false);
  EXPECT_EQ(stopped.steps_this_run, 2);
  const ClassifierRun b = run(split, 0, true);
  EXPECT_EQ(b.steps_this_run, 4);
  ASSERT_EQ(a.steps, 6);
  EXPECT_EQ(a.losses, b.losses);
  EXPECT_LT(a.losses.back(), a.losses.front());
  auto bytes = [](const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  };
  const std::string wa = bytes(whole + "/model.safetensors");
  EXPECT_GT(wa.size(), 1000u);
  EXPECT_TRUE(wa == bytes(split + "/model.safetensors")) << "the resumed weights differ";
  const nlohmann::json ja = comparable(io::read_json_file(whole + "/run.json"));
  const nlohmann::json jb = comparable(io::read_json_file(split + "/run.json"));
  EXPECT_EQ(ja, jb) << "uninterrupted:\n" << ja.dump(1) << "\nresumed:\n" << jb.dump(1);
  EXPECT_EQ(ja.at("method").at("name"), "classifier");
  EXPECT_EQ(ja.at("classifier").at("labels"), nlohmann::json({"safe", "harmful"}));
  EXPECT_EQ(ja.at("eval").size(), 4u);  // steps 0, 2, 4, 6: the held-out cross-entropy
  EXPECT_TRUE(std::isfinite(ja.at("eval").at(3).at("retain_nll").get<double>()));
  EXPECT_TRUE(ja.contains("best_step"));
  EXPECT_DOUBLE_EQ(ja.at("classifier").at("train_accuracy").get<double>(), b.train_accuracy);
}

// A classifier's recipe errors: eval.metrics: tofu (a language model's metrics) and model.adapter
// are refused before any step, naming the key.
TEST(ClassifierLoop, LanguageModelOnlyKeysAreRefused) {
  const std::string out = lethe::testing::scratch_dir("classifier_loop", "refused");
  for (const auto& [key, words] : std::vector<std::pair<std::string, std::string>>{
           {"eval.metrics=tofu", "eval.metrics: tofu measures a language model"},
           {"model.adapter=tests/trainers/fixtures/methods",
            "model.head classifier trains without model.adapter"}}) {
    std::vector<std::string> sets = classifier_sets(out);
    sets.push_back(key);
    std::ostringstream log;
    TrainerOptions o;
    o.log = &log;
    o.evaluate = [](models::CausalLM&) { return StepMetrics{}; };
    try {
      Trainer t(load_config("", sets, RunKind::finetune), o);
      ADD_FAILURE() << key << ": no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  }
}

// model.labels broken: an empty class name, and a saved classifier (the transformers fixture, 2
// labels) continued with 3 names — each refused before any step, naming the key and the counts.
TEST(ClassifierLoop, BadLabelsNameTheKey) {
  const std::string out = lethe::testing::scratch_dir("classifier_loop", "labels");
  for (const auto& [extra, words] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"model.labels=safe,,harmful"}, "model.labels \"safe,,harmful\" has an empty name"},
           {{"model.path=tests/trainers/fixtures/eval_extra/classifier", "model.labels=a,b,c"},
            "the classifier has 2 labels, model.labels names 3"}}) {
    std::vector<std::string> sets = classifier_sets(out);
    sets.insert(sets.end(), extra.begin(), extra.end());
    std::ostringstream log;
    TrainerOptions o;
    o.log = &log;
    try {
      Trainer t(load_config("", sets, RunKind::finetune), o);
      ADD_FAILURE() << extra.back() << ": no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Methods, RunRecord,
    ::testing::Values(ResumeCase{"ngdiff_gen", {"method.name=ngdiff", "method.auto_lr_every=2"}},
                      ResumeCase{"mollm", {"method.name=mollm"}}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace lethe::trainers
