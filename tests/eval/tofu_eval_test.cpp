// TOFU evaluation against an independent transformers + rouge_score + scipy implementation
// (tools/fixtures/make_tofu_eval_fixtures.py → tests/trainers/fixtures/tofu_eval/): tokenization of
// (question, answer) pairs, answer probabilities, the RA/WF probability ratio, truth ratios,
// greedy answers and their ROUGE-L, the aggregates, model utility and forget quality; then the
// `lethe eval` runner's files.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/io/json.h"
#include "eval/runner.h"
#include "eval/tofu.h"
#include "models/causal_lm.h"
#include "models/tokenizer/tokenizer.h"
#include "tests/common/compare.h"
#include "tests/common/temp_dir.h"
#include "trainers/config.h"

namespace lethe::eval {
namespace {

using lethe::testing::within;
const std::string kDir = "tests/trainers/fixtures/tofu_eval";

const nlohmann::json& ref() {
  static const nlohmann::json r = io::read_json_file(kDir + "/reference.json");
  return r;
}

struct Fixture {
  std::unique_ptr<models::CausalLM> model;
  std::unique_ptr<tokenizer::Tokenizer> tok;
};

const Fixture& fixture() {
  static const Fixture f = [] {
    Fixture x;
    x.model = models::load_causal_lm(kDir + "/model", Device::cpu(), {models::none_trainable});
    x.tok = tokenizer::load_tokenizer(kDir + "/model");
    return x;
  }();
  return f;
}

const std::pair<const char*, TofuSplit> kSplits[] = {{"forget", TofuSplit::forget},
                                                     {"retain", TofuSplit::retain},
                                                     {"real_authors", TofuSplit::real_authors},
                                                     {"world_facts", TofuSplit::world_facts}};

TofuSplitResult evaluate(const char* name, TofuSplit split) {
  TofuOptions o;
  o.batch_size = 4;  // odd split of 6 records: batches of 4 and 2, padding on both
  o.max_new_tokens = 24;
  const auto records = trainers::data::load_records(
      kDir + "/" + ref()["splits"][name].get<std::string>(), trainers::data::Format::tofu);
  return evaluate_tofu_split(*fixture().model, *fixture().tok, records, split, o);
}

TEST(TofuEval, EverySplitMatchesTransformers) {
  int compared = 0, generations = 0;
  for (const auto& [name, split] : kSplits) {
    const TofuSplitResult r = evaluate(name, split);
    const nlohmann::json& recs = ref()["records"][name];
    ASSERT_EQ(r.questions.size(), recs.size()) << name;
    for (size_t i = 0; i < recs.size(); ++i) {
      const nlohmann::json& w = recs[i];
      const std::string at = std::string(name) + "[" + std::to_string(i) + "]";
      EXPECT_TRUE(within(r.answer_prob[i], w["answer_prob"].get<double>(), 1e-7, 1e-4)) << at;
      EXPECT_TRUE(within(r.probability[i], w["probability"].get<double>(), 1e-7, 1e-4)) << at;
      EXPECT_TRUE(within(r.truth_ratio[i], w["truth_ratio"].get<double>(), 1e-7, 1e-4))
          << at << ": " << r.truth_ratio[i] << " vs " << w["truth_ratio"];
      if (w["greedy_stable"].get<bool>()) {
        EXPECT_EQ(r.generated[i], w["generated"].get<std::string>()) << at;
        EXPECT_TRUE(within(r.rouge_recall[i], w["rouge_recall"].get<double>(), 1e-12, 0)) << at;
        ++generations;
      }
      ++compared;
    }
    const nlohmann::json& agg = ref()["aggregates"][name];
    EXPECT_TRUE(within(r.prob, agg["prob"].get<double>(), 1e-7, 1e-4)) << name;
    EXPECT_TRUE(within(r.truth, agg["truth"].get<double>(), 1e-7, 1e-4)) << name;
    if (agg["greedy_stable"] == agg["records"]) {
      EXPECT_TRUE(within(r.rouge, agg["rouge"].get<double>(), 1e-12, 0)) << name;
    }
  }
  EXPECT_EQ(compared, 24);
  EXPECT_GE(generations, 20);  // the fixture marks near-tie generations; most are compared
}

// The tokenization evaluation scores with: the template's prompt (its trailing space handed to
// the answer), BOS, answer tokens labelled.
TEST(TofuEval, PairsAreTokenizedAsTheReference) {
  int compared = 0;
  for (const auto& [name, split] : kSplits) {
    const auto records = trainers::data::load_records(
        kDir + "/" + ref()["splits"][name].get<std::string>(), trainers::data::Format::tofu);
    trainers::data::SampleOptions so;
    so.format = trainers::data::Format::tofu;
    so.add_eos = false;
    for (size_t i = 0; i < records.size(); ++i) {
      const trainers::data::Sample s = trainers::data::tokenize_sample(
          trainers::data::record_texts(records[i], so), so, *fixture().tok);
      const nlohmann::json& w = ref()["records"][name][i];
      EXPECT_EQ(s.input_ids, w["input_ids"].get<std::vector<int64_t>>()) << name << i;
      EXPECT_EQ(s.labels, w["labels"].get<std::vector<int64_t>>()) << name << i;
      ++compared;
    }
  }
  EXPECT_EQ(compared, 24);
}

TEST(TofuEval, UtilityAndForgetQualityMatchScipy) {
  std::vector<TofuSplitResult> results;
  for (const auto& [name, split] : kSplits) results.push_back(evaluate(name, split));
  const std::vector<double> reference =
      ref()["reference_forget_truth_ratios"].get<std::vector<double>>();
  ASSERT_EQ(reference.size(), 6u);
  const TofuSummary s = summarize_tofu(results, &reference);
  EXPECT_EQ(s.utility_terms, 9);
  EXPECT_TRUE(within(s.model_utility, ref()["model_utility"].get<double>(), 1e-7, 1e-4))
      << s.model_utility;
  EXPECT_TRUE(within(s.forget_quality, ref()["forget_quality"].get<double>(), 1e-12, 1e-9))
      << s.forget_quality;
  EXPECT_TRUE(within(s.ks_statistic, ref()["ks_statistic"].get<double>(), 1e-12, 0));
  // Without a reference there is no forget quality.
  EXPECT_LT(summarize_tofu(results, nullptr).forget_quality, 0);
}

// `lethe eval`'s runner: eval.json with per-sample values, eval.csv; a retain reference given as
// a model directory gives the same forget quality as its truth ratios given directly.
TEST(TofuEval, RunnerWritesEvalJsonAndCsv) {
  const std::string out = lethe::testing::scratch_dir("tofu_eval", "run");
  std::vector<std::string> sets = {"model.path=" + kDir + "/model",
                                   "output.dir=" + out,
                                   "eval.forget=" + kDir + "/forget.json",
                                   "eval.retain=" + kDir + "/retain.json",
                                   "eval.real_authors=" + kDir + "/real_authors.json",
                                   "eval.world_facts=" + kDir + "/world_facts.json",
                                   "eval.max_new_tokens=24",
                                   "eval.batch_size=5",
                                   "eval.retain_reference=" + kDir + "/reference_model"};
  const EvalReport rep = run_eval(trainers::load_config("", sets, trainers::RunKind::eval));
  EXPECT_TRUE(
      within(rep.tofu.summary.forget_quality, ref()["forget_quality"].get<double>(), 1e-12, 1e-9));
  const nlohmann::json j = io::read_json_file(out + "/eval.json");
  EXPECT_EQ(j["splits"]["forget"]["samples"].size(), 6u);
  EXPECT_TRUE(j["splits"]["retain"]["samples"][0].contains("generated"));
  EXPECT_TRUE(std::filesystem::exists(out + "/eval.csv"));
  EXPECT_NE(report_markdown(rep).find("| forget |"), std::string::npos);
  // The saved eval.json serves as the reference of a later run.
  const std::string out2 = lethe::testing::scratch_dir("tofu_eval", "run2");
  sets[1] = "output.dir=" + out2;
  sets.back() = "eval.retain_reference=" + out + "/eval.json";
  const EvalReport rep2 = run_eval(trainers::load_config("", sets, trainers::RunKind::eval));
  // Against itself: every truth ratio equal, KS p-value 1.
  EXPECT_DOUBLE_EQ(rep2.tofu.summary.forget_quality, 1.0);
}

// The training loop's TOFU hook: none when the recipe does not ask for it, and a clear error when
// it asks for TOFU metrics without a TOFU file to measure them on.
TEST(TofuStepMetrics, AbsentUnlessAskedAndRefusedWithoutTofuFiles) {
  const std::string m = "tests/trainers/fixtures/methods";
  std::vector<std::string> sets = {"model.path=" + kDir + "/model",
                                   "data.forget=" + m + "/forget.jsonl", "data.format=tokenized",
                                   "method.name=ga",
                                   "output.dir=" + lethe::testing::scratch_dir("tofu_hook", "cfg")};
  EXPECT_EQ(tofu_step_metrics(trainers::load_config("", sets, trainers::RunKind::unlearn)),
            nullptr);
  sets.push_back("eval.every_steps=2");
  EXPECT_EQ(tofu_step_metrics(trainers::load_config("", sets, trainers::RunKind::unlearn)),
            nullptr);  // eval.metrics: loss
  sets.push_back("eval.metrics=tofu");
  try {
    tofu_step_metrics(trainers::load_config("", sets, trainers::RunKind::unlearn));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("eval.metrics: tofu needs TOFU *_perturbed files"),
              std::string::npos)
        << e.what();
  }
  sets.push_back("eval.forget=" + kDir + "/forget.json");
  const trainers::EvalHook hook =
      tofu_step_metrics(trainers::load_config("", sets, trainers::RunKind::unlearn));
  ASSERT_TRUE(hook != nullptr);
}

}  // namespace
}  // namespace lethe::eval
