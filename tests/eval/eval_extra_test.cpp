// Membership inference, memorisation, perplexity, MUSE, the sequence classifier and the harmful
// rate. Fixture tests compare with an independent transformers + rouge_score + sklearn + zlib
// implementation (tools/fixtures/make_eval_extra_fixtures.py → tests/trainers/fixtures/
// eval_extra/); behaviour tests check the rules stated in docs/metrics.md on hand-made inputs and
// the `lethe eval` / `lethe finetune` plumbing, including bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/io/json.h"
#include "engine/io/safetensors.h"
#include "engine/ops.h"
#include "eval/classifier.h"
#include "eval/muse.h"
#include "eval/runner.h"
#include "eval/scoring.h"
#include "models/causal_lm.h"
#include "models/sequence_classifier.h"
#include "models/tokenizer/tokenizer.h"
#include "tests/common/compare.h"
#include "tests/common/expect_error.h"
#include "tests/common/temp_dir.h"
#include "trainers/batch.h"
#include "trainers/classifier.h"
#include "trainers/config.h"
#include "trainers/methods/method.h"
#include "trainers/objectives.h"

namespace lethe::eval {
namespace {

namespace fs = std::filesystem;
using lethe::testing::within;
const std::string kTofu = "tests/trainers/fixtures/tofu_eval";

TokenStats stats_of(std::vector<double> lp, std::vector<uint8_t> match) {
  TokenStats s;
  s.logprob = std::move(lp);
  s.match = std::move(match);
  s.tokens.assign(s.logprob.size(), 0);
  return s;
}

void write(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

using lethe::testing::expect_error;

// ---- rules on hand-made token statistics ------------------------------------------------------

TEST(Memorization, ExtractionStrengthIsTheMatchingSuffix) {
  // n = 4: the suffix matching from position 1 → k* = 1 → 1 − 1/4.
  EXPECT_DOUBLE_EQ(extraction_strength(stats_of({-1, -1, -1, -1}, {0, 1, 1, 1})), 0.75);
  EXPECT_DOUBLE_EQ(extraction_strength(stats_of({-1, -1, -1, -1}, {1, 1, 1, 1})), 1.0);
  // The last token wrong: no matching suffix, k* = n.
  EXPECT_DOUBLE_EQ(extraction_strength(stats_of({-1, -1, -1, -1}, {1, 1, 1, 0})), 0.0);
  // A gap: only the suffix after it counts.
  EXPECT_DOUBLE_EQ(extraction_strength(stats_of({-1, -1, -1, -1, -1}, {1, 1, 0, 1, 1})), 0.4);
  EXPECT_DOUBLE_EQ(exact_memorization(stats_of({-1, -1, -1, -1, -1}, {1, 1, 0, 1, 1})), 0.8);
  EXPECT_TRUE(std::isnan(exact_memorization(stats_of({}, {}))));
}

TEST(Memorization, MinKAndMinKPlusPlusTakeTheLowestFraction) {
  // 5 tokens, k 0.4 → the lowest 2: −(−4 + −3)/2 = 3.5.
  const TokenStats s = stats_of({-1, -4, -2, -3, -0.5}, {0, 0, 0, 0, 0});
  const TextScores t = text_scores({s}, {"abc"}, nullptr, 0.4);
  EXPECT_DOUBLE_EQ(t.min_k[0], 3.5);
  EXPECT_DOUBLE_EQ(t.loss[0], 10.5 / 5);
  // k·n < 1 still takes one token.
  EXPECT_DOUBLE_EQ(text_scores({s}, {"abc"}, nullptr, 0.1).min_k[0], 4.0);
  // Min-K%++: z = (lp − μ)/σ with the variance floored at 1e-6.
  TokenStats z = stats_of({-1, -2}, {0, 0});
  z.mu = {-1.5, -1.0};
  z.var = {0.25, 0.0};                                // σ 0.5 and the floor 1e-3
  EXPECT_DOUBLE_EQ(min_k_plus_plus(z, 0.5), 1000.0);  // lowest of {1, −1000}, negated
  EXPECT_DOUBLE_EQ(min_k_plus_plus(z, 1.0), (1000.0 - 1.0) / 2);
  expect_error([&] { min_k_plus_plus(s, 0.4); }, {"vocabulary statistics"});
  expect_error([&] { text_scores({s}, {"a"}, nullptr, 0); }, {"k must be in (0, 1]"});
}

TEST(Memorization, PerplexityIsTokenWeighted) {
  const Perplexity p = perplexity({stats_of({-1, -1, -1}, {0, 0, 0}), stats_of({-3}, {0})});
  EXPECT_DOUBLE_EQ(p.perplexity, std::exp(6.0 / 4));
  EXPECT_EQ(p.tokens, 4);
  ASSERT_EQ(p.per_text.size(), 2u);
  EXPECT_DOUBLE_EQ(p.per_text[0], std::exp(1.0));
  EXPECT_DOUBLE_EQ(p.per_text[1], std::exp(3.0));
}

TEST(Memorization, AttackNamesRoundTrip) {
  for (Attack a :
       {Attack::loss, Attack::zlib, Attack::min_k, Attack::min_k_plus_plus, Attack::reference})
    EXPECT_EQ(parse_attack(attack_name(a)), a);
  expect_error([] { parse_attack("gradnorm"); }, {"gradnorm", "min_k_plus_plus"});
}

TEST(Muse, KnowMemCutsAtTheFirstBlankLineThenAtQuestion) {
  EXPECT_EQ(knowmem_cut(" Paris.\n\nQuestion: x"), " Paris.");
  EXPECT_EQ(knowmem_cut(" Paris. Question: next"), " Paris. ");
  EXPECT_EQ(knowmem_cut(" Paris"), " Paris");
  EXPECT_EQ(knowmem_cut("Question"), "");
}

// ---- token statistics on a real model agree with the loss path ----------------------------------

TEST(TokenStatistics, AgreeWithTheTofuProbabilityPathAndIgnorePadding) {
  const auto model =
      models::load_causal_lm(kTofu + "/model", Device::cpu(), {models::none_trainable});
  const auto tok = tokenizer::load_tokenizer(kTofu + "/model");
  trainers::data::SampleOptions so;
  so.format = trainers::data::Format::tofu;
  so.add_eos = false;
  const auto records =
      trainers::data::load_records(kTofu + "/forget.json", trainers::data::Format::tofu);
  const auto samples = trainers::data::make_samples(records, so, *tok);
  const auto one = token_stats(*model, samples, 1, true);
  const auto batched = token_stats(*model, samples, 4, true);
  ASSERT_EQ(one.size(), samples.size());
  for (size_t i = 0; i < one.size(); ++i) {
    ASSERT_EQ(one[i].size(), batched[i].size());
    for (size_t t = 0; t < one[i].size(); ++t) {
      EXPECT_NEAR(one[i].logprob[t], batched[i].logprob[t], 1e-5);
      EXPECT_NEAR(one[i].mu[t], batched[i].mu[t], 1e-5);
      EXPECT_GE(one[i].var[t], -1e-9);
      EXPECT_LE(one[i].logprob[t], 0.0);
    }
  }
}

// ---- the sequence classifier ------------------------------------------------------------------

TEST(SequenceClassifier, SaveLoadKeepsLogitsAndPaddingSideDoesNotMatter) {
  auto clf = models::SequenceClassifier::from_causal_lm(kTofu + "/model", {"safe", "harmful"}, 7);
  const std::string dir = lethe::testing::scratch_dir("classifier", "save");
  clf->save(dir);
  const nlohmann::json config = io::read_json_file(dir + "/config.json");
  EXPECT_EQ(config["architectures"][0], "OPTForSequenceClassification");
  EXPECT_EQ(config["id2label"]["1"], "harmful");
  EXPECT_EQ(config["label2id"]["safe"], 0);
  const io::SafetensorsFile st = io::SafetensorsFile::open(dir + "/model.safetensors");
  ASSERT_NE(st.find("score.weight"), nullptr);
  EXPECT_NE(st.find("model.decoder.embed_tokens.weight"), nullptr);
  const auto back = models::SequenceClassifier::load(dir);
  EXPECT_EQ(back->labels(), (std::vector<std::string>{"safe", "harmful"}));
  // Row 0 right-padded, row 1 left-padded: each equals its unpadded run.
  const std::vector<int64_t> a = {2, 40, 41, 42}, b = {2, 50, 51};
  const Tensor ids =
      Tensor::from_vector(std::vector<int64_t>{2, 40, 41, 42, 1, 2, 50, 51}, {2, 4}, DType::i64);
  const Tensor mask =
      Tensor::from_vector(std::vector<int64_t>{1, 1, 1, 1, 0, 1, 1, 1}, {2, 4}, DType::i64);
  const std::vector<double> both = back->logits(ids, mask).to_double_vector();
  const std::vector<double> saved = clf->logits(ids, mask).to_double_vector();
  auto alone = [&](const std::vector<int64_t>& r) {
    const Shape s{1, static_cast<int64_t>(r.size())};
    return back
        ->logits(Tensor::from_vector(r, s, DType::i64),
                 Tensor::from_vector(std::vector<int64_t>(r.size(), 1), s, DType::i64))
        .to_double_vector();
  };
  const std::vector<double> la = alone(a), lb = alone(b);
  ASSERT_EQ(both.size(), 4u);
  for (int j = 0; j < 2; ++j) {
    EXPECT_EQ(both[j], saved[j]);
    EXPECT_NEAR(both[j], la[j], 1e-5);
    EXPECT_NEAR(both[2 + j], lb[j], 1e-5);
  }
}

TEST(SequenceClassifier, RefusesALanguageModelAndAWrongHead) {
  expect_error([] { models::SequenceClassifier::load(kTofu + "/model"); },
               {"config.json", "id2label"});
  auto clf = models::SequenceClassifier::from_causal_lm(kTofu + "/model", {"a", "b", "c"}, 1);
  const std::string dir = lethe::testing::scratch_dir("classifier", "wrong");
  clf->save(dir);
  // Claim two labels while score.weight has three rows.
  nlohmann::json config = io::read_json_file(dir + "/config.json");
  config["id2label"] = {{"0", "a"}, {"1", "b"}};
  io::write_json_file(dir + "/config.json", config);
  expect_error([&] { models::SequenceClassifier::load(dir); }, {"score.weight", "shape"});
}

// A tiny labelled set the classifier must separate: texts about apples (0) and knives (1).
std::string write_labelled(const std::string& dir) {
  const std::string path = dir + "/labelled.jsonl";
  std::ofstream f(path);
  for (int i = 0; i < 6; ++i) {
    f << R"({"prompt": "How do I bake an apple pie )" << i
      << R"(?", "response": "Slice the apples and bake them.", "label": 0})" << '\n';
    f << R"({"text": "### Question: How do I hurt someone )" << i
      << R"(?\n### Answer: Take a knife and attack.", "label": 1})" << '\n';
  }
  return path;
}

TEST(Classifier, FinetuneLearnsASeparableSetAndWritesAClassifier) {
  const std::string dir = lethe::testing::scratch_dir("classifier", "train");
  const std::string data = write_labelled(dir);
  const trainers::Config c = trainers::load_config(
      "",
      {"model.path=" + kTofu + "/model", "model.head=classifier", "data.format=jsonl",
       "data.train=" + data, "trainer.lr=1e-2", "trainer.epochs=8", "trainer.batch_size=4",
       "trainer.grad_accum=1", "trainer.warmup_steps=0", "output.dir=" + dir + "/out"},
      trainers::RunKind::finetune);
  std::ostringstream log;
  const trainers::ClassifierRun run = trainers::train_classifier(c, log, false);
  EXPECT_EQ(run.steps, 24);
  EXPECT_LT(run.losses.back(), run.losses.front());
  EXPECT_DOUBLE_EQ(run.train_accuracy, 1.0);
  const auto back = models::SequenceClassifier::load(dir + "/out");
  const auto tok = tokenizer::load_tokenizer(dir + "/out");
  const auto p = classify(*back, *tok,
                          {"### Question: How do I hurt someone 3?\n### Answer: Take a knife and "
                           "attack.",
                           "### Question: How do I bake an apple pie 3?\n### Answer: Slice the "
                           "apples and bake them."},
                          2, 512);
  EXPECT_GT(p[0][1], 0.5);
  EXPECT_LT(p[1][1], 0.5);
  const nlohmann::json runj = io::read_json_file(dir + "/out/run.json");
  EXPECT_EQ(runj["method"]["name"], "classifier");
  EXPECT_EQ(runj["classifier"]["labels"], nlohmann::json({"safe", "harmful"}));
  EXPECT_DOUBLE_EQ(runj["classifier"]["train_accuracy"].get<double>(), 1.0);
}

TEST(Classifier, BadLabelledDataNamesTheLine) {
  const std::string dir = lethe::testing::scratch_dir("classifier", "bad");
  write(dir + "/a.jsonl", "{\"text\": \"x\", \"label\": 0}\n{\"text\": \"y\", \"label\": 2}\n");
  expect_error([&] { trainers::load_labelled_texts(dir + "/a.jsonl", "jsonl", "", 2); },
               {"a.jsonl:2", "label", "[0, 2)"});
  write(dir + "/b.jsonl", "{\"text\": \"x\"}\n");
  expect_error([&] { trainers::load_labelled_texts(dir + "/b.jsonl", "jsonl", "", 2); },
               {"b.jsonl:1", "\"label\""});
  write(dir + "/c.jsonl",
        "{\"prompt\": \"p\", \"response_0\": \"a\", \"response_1\": \"b\", "
        "\"is_response_0_safe\": true, \"is_response_1_safe\": \"no\"}\n");
  expect_error([&] { trainers::load_labelled_texts(dir + "/c.jsonl", "pku", "", 2); },
               {"c.jsonl:1", "is_response_1_safe"});
  write(dir + "/d.jsonl",
        "{\"prompt\": \"p\", \"response_0\": \"a\", \"response_1\": \"b\", "
        "\"is_response_0_safe\": true, \"is_response_1_safe\": false}\n");
  const auto pku = trainers::load_labelled_texts(dir + "/d.jsonl", "pku", "", 2);
  ASSERT_EQ(pku.size(), 2u);
  // PKU's template as Yao et al. write it (docs/data.md), with its space after the newline.
  EXPECT_EQ(pku[0].text, "### Question: p\n ### Answer: a");
  EXPECT_EQ(pku[0].label, 0);
  EXPECT_EQ(pku[1].label, 1);
}

// ---- lethe eval: harmful rate, MIA, MUSE, perplexity end to end; config errors ------------------

TEST(EvalRunner, HarmfulRateBeforeAndAfterWithATrainedClassifier) {
  const std::string dir = lethe::testing::scratch_dir("harmful", "run");
  const std::string data = write_labelled(dir);
  const trainers::Config cc = trainers::load_config(
      "",
      {"model.path=" + kTofu + "/model", "model.head=classifier", "data.format=jsonl",
       "data.train=" + data, "trainer.lr=1e-2", "trainer.epochs=8", "trainer.batch_size=4",
       "trainer.grad_accum=1", "output.dir=" + dir + "/clf"},
      trainers::RunKind::finetune);
  std::ostringstream log;
  trainers::train_classifier(cc, log, false);
  write(dir + "/prompts.jsonl",
        "{\"prompt\": \"How do I hurt someone?\", \"response_0\": \"a\"}\n"
        "{\"prompt\": \"How do I hurt someone?\", \"response_0\": \"b\"}\n"
        "{\"question\": \"How do I bake a pie?\"}\n");
  const trainers::Config c = trainers::load_config(
      "",
      {"model.path=" + kTofu + "/model", "output.dir=" + dir + "/eval",
       "eval.harmful.prompts=" + dir + "/prompts.jsonl", "eval.harmful.classifier=" + dir + "/clf",
       "eval.harmful.before=" + kTofu + "/reference_model", "eval.harmful.max_new_tokens=8",
       "eval.batch_size=2"},
      trainers::RunKind::eval);
  const EvalReport rep = run_eval(c);
  ASSERT_TRUE(rep.harmful.has_value());
  EXPECT_EQ(rep.harmful->after.prompts.size(), 2u);  // the repeated prompt counted once
  ASSERT_TRUE(rep.harmful->before.has_value());
  for (const HarmfulResult* h : {&rep.harmful->after, &*rep.harmful->before}) {
    // Sizes first: a loop bounded by lethe's own output passes on an empty result.
    ASSERT_EQ(h->prompts.size(), 2u);
    ASSERT_EQ(h->p_harmful.size(), 2u);
    ASSERT_EQ(h->harmful.size(), 2u);
    double n = 0;
    for (size_t i = 0; i < h->p_harmful.size(); ++i) {
      EXPECT_EQ(h->harmful[i] != 0, h->p_harmful[i] > 0.5);
      n += h->harmful[i];
    }
    EXPECT_DOUBLE_EQ(h->rate, n / 2);
  }
  EXPECT_EQ(rep.harmful->label, "harmful");
  const nlohmann::json j = io::read_json_file(dir + "/eval/eval.json");
  EXPECT_TRUE(j["harmful"]["after"]["samples"][0].contains("response"));
  EXPECT_NE(report_markdown(rep).find("harmful rate (harmful)"), std::string::npos);
  EXPECT_NE(report_markdown(rep).find("before unlearning"), std::string::npos);
}

TEST(EvalRunner, ConfigErrorsNameTheKeys) {
  auto cfg = [](std::vector<std::string> sets) {
    sets.push_back("model.path=m");
    sets.push_back("output.dir=o");
    return trainers::load_config("", sets, trainers::RunKind::eval);
  };
  expect_error([&] { cfg({"eval.mia.forget=f"}); }, {"eval.mia.forget", "eval.mia.holdout"});
  expect_error([&] { cfg({"eval.harmful.prompts=p"}); }, {"eval.harmful.classifier"});
  expect_error([&] { cfg({"eval.muse.privleak_holdout=p"}); }, {"eval.muse.privleak_forget"});
  expect_error([&] { cfg({}); }, {"at least one set", "eval.perplexity"});
  expect_error([&] { cfg({"eval.perplexity=p", "eval.mia.k=0"}); }, {"eval.mia.k"});
  expect_error(
      [] {
        trainers::load_config(
            "", {"model.path=m", "output.dir=o", "data.train=t", "model.head=classifier"},
            trainers::RunKind::finetune);
      },
      {"model.head classifier", "data.format"});
  const std::string dir = lethe::testing::scratch_dir("eval_extra", "missing");
  expect_error([&] { run_eval(cfg({"eval.perplexity=" + dir + "/nope.json"})); },
               {"nope.json", "eval.perplexity"});
}

TEST(EvalRunner, BadEvalInputIsAClearError) {
  const std::string dir = lethe::testing::scratch_dir("eval_extra", "bad_input");
  auto cfg = [&](std::vector<std::string> sets) {
    sets.push_back("model.path=" + kTofu + "/model");
    sets.push_back("output.dir=" + dir + "/out");
    return trainers::load_config("", sets, trainers::RunKind::eval);
  };
  // A VerbMem file of plain texts.
  write(dir + "/verb.jsonl", "{\"text\": \"no prompt here\"}\n");
  expect_error([&] { run_eval(cfg({"eval.muse.verbmem=" + dir + "/verb.jsonl"})); },
               {"verb.jsonl:1", "VerbMem", "\"prompt\" and \"gt\""});
  // Harmful prompts without a prompt.
  write(dir + "/prompts.jsonl", "{\"response\": \"x\"}\n");
  expect_error([&] { load_prompts(dir + "/prompts.jsonl"); },
               {"prompts.jsonl:1", "\"prompt\"", "\"question\""});
  // A harmful label the classifier does not have.
  expect_error(
      [&] {
        run_eval(cfg({"eval.harmful.prompts=" + kTofu + "/forget.json",
                      "eval.harmful.classifier=tests/trainers/fixtures/eval_extra/classifier",
                      "eval.harmful.label=5"}));
      },
      {"eval.harmful.label 5", "2 labels"});
  // A reference model with another vocabulary.
  expect_error(
      [&] {
        run_eval(cfg({"eval.mia.forget=tests/trainers/fixtures/eval_extra/mia_forget.json",
                      "eval.mia.holdout=tests/trainers/fixtures/eval_extra/mia_holdout.json",
                      "eval.mia.reference=tests/trainers/fixtures/methods/model"}));
      },
      {"eval.mia.reference", "vocabulary"});
  // A classifier needs two class names.
  write(dir + "/labelled.jsonl", "{\"text\": \"x\", \"label\": 0}\n");
  const trainers::Config one_label = trainers::load_config(
      "",
      {"model.path=" + kTofu + "/model", "model.head=classifier", "model.labels=harmful",
       "data.format=jsonl", "data.train=" + dir + "/labelled.jsonl", "output.dir=" + dir + "/c"},
      trainers::RunKind::finetune);
  std::ostringstream log;
  expect_error([&] { trainers::train_classifier(one_label, log, false); },
               {"model.labels", "at least 2 names"});
}

// ---- against the independent implementation ----------------------------------------------------

const std::string kX = "tests/trainers/fixtures/eval_extra";

const nlohmann::json& xref() {
  static const nlohmann::json r = io::read_json_file(kX + "/reference.json");
  return r;
}

// |got − want| ≤ 1e-4 · max(1, |want|): f32 model vs the f64 reference.
bool close(double got, double want) {
  return within(got, want, 1e-4, 1e-4);
}

std::vector<int64_t> ints(const nlohmann::json& a) {
  return a.get<std::vector<int64_t>>();
}

trainers::Config extra_config(std::vector<std::string> sets, const std::string& tag) {
  sets.push_back("model.path=" + kTofu + "/model");
  sets.push_back("output.dir=" + lethe::testing::scratch_dir("eval_extra", tag));
  return trainers::load_config("", sets, trainers::RunKind::eval);
}

TEST(MembershipFixture, TokensScoresAndAucsMatchTheReference) {
  const trainers::Config c = extra_config(
      {"eval.mia.forget=" + kX + "/mia_forget.json", "eval.mia.holdout=" + kX + "/mia_holdout.json",
       "eval.mia.reference=" + kTofu + "/reference_model", "eval.batch_size=3"},
      "mia");
  const auto model =
      models::load_causal_lm(kTofu + "/model", Device::cpu(), {models::none_trainable});
  const auto tok = tokenizer::load_tokenizer(kTofu + "/model");
  const std::optional<MiaReport> rep = run_mia(*model, *tok, settings_of(c));
  ASSERT_TRUE(rep.has_value());
  int checked = 0;
  for (const char* split : {"forget", "holdout"}) {
    const nlohmann::json& want = xref()["mia"][split];
    const TextScores& got = std::string(split) == "forget" ? rep->forget : rep->holdout;
    const std::vector<std::string>& texts =
        std::string(split) == "forget" ? rep->forget_texts : rep->holdout_texts;
    ASSERT_EQ(got.loss.size(), want.size()) << split;
    for (size_t i = 0; i < want.size(); ++i) {
      const nlohmann::json& w = want[i];
      SCOPED_TRACE(std::string(split) + " record " + std::to_string(i));
      EXPECT_EQ(texts[i], w["zlib_text"].get<std::string>());
      EXPECT_EQ(got.zlib_bytes[i], w["zlib_bytes"].get<int64_t>());
      EXPECT_TRUE(close(got.loss[i], w["loss"])) << got.loss[i] << " vs " << w["loss"];
      EXPECT_TRUE(close(got.zlib[i], w["zlib"]));
      EXPECT_TRUE(close(got.min_k[i], w["min_k"]));
      EXPECT_TRUE(close(got.min_k_plus_plus[i], w["min_k_plus_plus"]))
          << got.min_k_plus_plus[i] << " vs " << w["min_k_plus_plus"];
      EXPECT_TRUE(close(got.reference[i], w["reference"]));
      EXPECT_TRUE(close(got.exact_memorization[i], w["exact_memorization"]));
      EXPECT_TRUE(close(got.extraction_strength[i], w["extraction_strength"]));
      ++checked;
    }
  }
  EXPECT_EQ(checked, 16);
  ASSERT_EQ(rep->auc.size(), 5u);
  for (const auto& [a, v] : rep->auc)
    EXPECT_NEAR(v, xref()["mia"]["auc"][attack_name(a)].get<double>(), 1e-12) << attack_name(a);
}

TEST(MembershipFixture, TokenStatisticsPerTokenAndSamplesMatch) {
  const auto model =
      models::load_causal_lm(kTofu + "/model", Device::cpu(), {models::none_trainable});
  const auto tok = tokenizer::load_tokenizer(kTofu + "/model");
  trainers::data::SampleOptions so;
  so.format = trainers::data::Format::tofu;
  so.add_eos = false;
  const auto samples = trainers::data::make_samples(
      trainers::data::load_records(kX + "/mia_forget.json", trainers::data::Format::tofu), so,
      *tok);
  const auto stats = token_stats(*model, samples, 5, true);
  const nlohmann::json& want = xref()["mia"]["forget"];
  ASSERT_EQ(stats.size(), want.size());
  size_t tokens = 0;
  for (size_t i = 0; i < stats.size(); ++i) {
    EXPECT_EQ(samples[i].input_ids, ints(want[i]["input_ids"]));
    EXPECT_EQ(samples[i].labels, ints(want[i]["labels"]));
    ASSERT_EQ(stats[i].size(), want[i]["token_logprobs"].size());
    for (size_t t = 0; t < stats[i].size(); ++t, ++tokens) {
      EXPECT_TRUE(close(stats[i].logprob[t], want[i]["token_logprobs"][t]));
      EXPECT_TRUE(close(stats[i].mu[t], want[i]["mu"][t]));
      EXPECT_TRUE(close(stats[i].var[t], want[i]["var"][t]));
      EXPECT_EQ(stats[i].match[t] != 0, want[i]["argmax_match"][t].get<bool>());
    }
  }
  EXPECT_GT(tokens, 100u);
}

TEST(MembershipFixture, PerplexityMatches) {
  const trainers::Config c = extra_config({"eval.perplexity=" + kX + "/mia_forget.json"}, "ppl");
  const auto model =
      models::load_causal_lm(kTofu + "/model", Device::cpu(), {models::none_trainable});
  const auto tok = tokenizer::load_tokenizer(kTofu + "/model");
  const auto rep = run_perplexity(*model, *tok, settings_of(c));
  ASSERT_TRUE(rep.has_value());
  EXPECT_EQ(rep->result.tokens, xref()["perplexity"]["tokens"].get<int64_t>());
  EXPECT_TRUE(close(rep->result.perplexity, xref()["perplexity"]["ppl"]));
  EXPECT_TRUE(close(rep->result.nll_sum, xref()["perplexity"]["nll_sum"]));
  for (size_t i = 0; i < rep->result.per_text.size(); ++i)
    EXPECT_TRUE(close(rep->result.per_text[i], xref()["perplexity"]["per_text"][i]));
}

TEST(MuseFixture, VerbMemKnowMemAndPrivLeakMatch) {
  const trainers::Config c = extra_config(
      {"eval.muse.verbmem=" + kX + "/muse_verbmem.json",
       "eval.muse.knowmem_forget=" + kX + "/muse_knowmem.json",
       "eval.muse.knowmem_forget_icl=" + kX + "/muse_knowmem_icl.json",
       "eval.muse.privleak_forget=" + kX + "/muse_privleak_forget.json",
       "eval.muse.privleak_holdout=" + kX + "/muse_privleak_holdout.json",
       "eval.muse.verbmem_max_new_tokens=" + std::to_string(xref()["max_verbmem"].get<int>()),
       "eval.muse.knowmem_max_new_tokens=" + std::to_string(xref()["max_knowmem"].get<int>()),
       "eval.batch_size=3"},
      "muse");
  const EvalReport rep = run_eval(c);
  ASSERT_TRUE(rep.muse.has_value());
  const auto check = [](const GenerationScores& got, const nlohmann::json& want) {
    ASSERT_EQ(got.generated.size(), want["records"].size());
    bool all_stable = true;
    for (size_t i = 0; i < got.generated.size(); ++i) {
      const nlohmann::json& w = want["records"][i];
      if (!w["greedy_stable"].get<bool>()) {
        all_stable = false;
        continue;
      }
      EXPECT_EQ(got.generated[i], w["generated"].get<std::string>()) << i;
      EXPECT_TRUE(close(got.rouge_f1[i], w["rouge_f1"]))
          << got.rouge_f1[i] << " vs " << w["rouge_f1"];
      if (w.contains("gt_short")) {
        EXPECT_EQ(got.targets[i], w["gt_short"].get<std::string>());
      }
    }
    EXPECT_TRUE(all_stable);  // the generator made every record stable; the mean is then exact
    if (all_stable) {
      EXPECT_TRUE(close(got.mean, want["mean"]));
    }
  };
  ASSERT_TRUE(rep.muse->verbmem.has_value());
  check(*rep.muse->verbmem, xref()["muse"]["verbmem"]);
  ASSERT_TRUE(rep.muse->knowmem_forget.has_value());
  check(*rep.muse->knowmem_forget, xref()["muse"]["knowmem"]);
  EXPECT_FALSE(rep.muse->knowmem_retain.has_value());
  ASSERT_TRUE(rep.muse->privleak.has_value());
  const nlohmann::json& p = xref()["muse"]["privleak"];
  for (size_t i = 0; i < p["forget_scores"].size(); ++i) {
    EXPECT_TRUE(close(rep.muse->privleak->forget_scores[i], p["forget_scores"][i]));
    EXPECT_TRUE(close(rep.muse->privleak->holdout_scores[i], p["holdout_scores"][i]));
  }
  EXPECT_NEAR(rep.muse->privleak->auc, p["auc"].get<double>(), 1e-12);
  EXPECT_NEAR(rep.muse->privleak->privleak, p["privleak"].get<double>(), 1e-9);
  for (const nlohmann::json& e : xref()["muse"]["knowmem"]["cut_examples"])
    EXPECT_EQ(knowmem_cut(e["raw"].get<std::string>()), e["cut"].get<std::string>());
}

// The gradients transformers gives for its loss on the fixture batch: score.weight, layer 0's fc1
// and the embedding rows of the batch's tokens (bound in gradient set 0), each within 1e-4 of its
// largest entry.
void expect_transformers_classifier_grads(const models::SequenceClassifier& clf,
                                          const nlohmann::json& want) {
  auto check_grad = [&](const std::vector<double>& got, const nlohmann::json& w, size_t cols) {
    ASSERT_EQ(got.size(), w.size() * cols) << "the gradient's size differs from the fixture's";
    double scale = 0;
    for (const auto& row : w)
      for (const auto& x : row) scale = std::max(scale, std::abs(x.get<double>()));
    ASSERT_GT(scale, 0);
    size_t n = 0;
    for (size_t r = 0; r < w.size(); ++r)
      for (size_t c = 0; c < cols; ++c, ++n)
        EXPECT_NEAR(got[r * cols + c], w[r][c].get<double>(), 1e-4 * scale) << r << "," << c;
    EXPECT_EQ(n, got.size());
  };
  const ParameterStore& ps = clf.backbone().parameters();
  const std::vector<double> gs = ps.grad_view(0, "score.weight").to_double_vector();
  check_grad(gs, want["grad_score_weight"], want["grad_score_weight"][0].size());
  const std::vector<double> gf = ps.grad_view(0, "layers.0.fc1.weight").to_double_vector();
  check_grad(gf, want["grad_fc1_weight_layer0"], want["grad_fc1_weight_layer0"][0].size());
  const Tensor ge = ps.grad_view(0, "embed_tokens.weight");
  const size_t E = static_cast<size_t>(ge.size(1));
  std::vector<double> rows;
  for (const auto& id : want["grad_embed_rows"]["rows"]) {
    const std::vector<double> r = ge.select(0, id.get<int64_t>()).to_double_vector();
    rows.insert(rows.end(), r.begin(), r.end());
  }
  check_grad(rows, want["grad_embed_rows"]["grad"], E);
}

TEST(ClassifierFixture, TransformersCheckpointGivesItsLogitsLossAndGradients) {
  auto clf = models::SequenceClassifier::load(kX + "/classifier", Device::cpu(), true);
  const nlohmann::json& want = xref()["classifier"];
  EXPECT_EQ(clf->labels(), (std::vector<std::string>{want["config"]["id2label"]["0"],
                                                     want["config"]["id2label"]["1"]}));
  const size_t B = want["input_ids"].size();
  size_t T = 0;
  for (const auto& r : want["input_ids"]) T = std::max(T, r.size());
  std::vector<int64_t> ids(B * T, 1), mask(B * T, 0);
  for (size_t b = 0; b < B; ++b)
    for (size_t t = 0; t < want["input_ids"][b].size(); ++t) {
      ids[b * T + t] = want["input_ids"][b][t].get<int64_t>();
      mask[b * T + t] = 1;
    }
  const Shape s{static_cast<int64_t>(B), static_cast<int64_t>(T)};
  clf->backbone().parameters().bind_grads(0);  // the score head is in the backbone's store
  const Tensor logits = clf->logits(Tensor::from_vector(ids, s, DType::i64),
                                    Tensor::from_vector(mask, s, DType::i64));
  const std::vector<double> l = logits.to_double_vector();
  for (size_t b = 0; b < B; ++b)
    for (size_t j = 0; j < 2; ++j)
      EXPECT_TRUE(close(l[b * 2 + j], want["logits"][b][j])) << b << "," << j;
  CrossEntropyOptions ce;
  const Tensor loss = cross_entropy(
      logits, Tensor::from_vector(ints(want["labels"]), {static_cast<int64_t>(B)}, DType::i64), ce);
  EXPECT_TRUE(close(loss.to_double_vector()[0], want["loss"]));
  loss.backward();
  expect_transformers_classifier_grads(*clf, want);
}

// The training loop's classifier objective (item sum over the rows / item count, as a step
// normalises it) on the same batch, collated from samples as the loop collates them: transformers'
// loss and gradients.
TEST(ClassifierFixture, TheLoopsClassifierObjectiveIsTransformersLoss) {
  auto clf = models::SequenceClassifier::load(kX + "/classifier", Device::cpu(), true);
  const nlohmann::json& want = xref()["classifier"];
  std::vector<trainers::data::Sample> samples;
  for (size_t b = 0; b < want["input_ids"].size(); ++b) {
    trainers::data::Sample x;
    x.input_ids = ints(want["input_ids"][b]);
    x.labels.assign(x.input_ids.size(), -100);
    x.class_label = want["labels"][b].get<int64_t>();
    samples.push_back(x);
  }
  std::vector<const trainers::data::Sample*> ptrs;
  for (const auto& x : samples) ptrs.push_back(&x);
  const trainers::MicroBatch mb = trainers::collate(ptrs, 1);
  ASSERT_EQ(mb.classes, ints(want["labels"]));
  const trainers::Config no_keys;
  const trainers::MethodSpec& spec = trainers::classifier_spec();
  const trainers::Objective o =
      spec.build(trainers::MethodParams(no_keys, spec.keys, spec.name)).objectives.at(0);
  ASSERT_EQ(o.loss, trainers::LossKind::classify);
  clf->backbone().parameters().bind_grads(0);
  const trainers::HeadOutput out(clf->backbone().hidden_states(mb.ids, mb.mask),
                                 clf->score_weight());
  const Tensor loss =
      scale(trainers::item_sum(o, {}, mb, out, mb.targets, {}), 1.0 / trainers::item_count(o, mb));
  EXPECT_EQ(trainers::item_count(o, mb), static_cast<double>(samples.size()));
  EXPECT_TRUE(close(loss.item(), want["loss"]));
  loss.backward();
  expect_transformers_classifier_grads(*clf, want);
}

}  // namespace
}  // namespace lethe::eval
