// The evaluation metrics against their reference packages (tools/fixtures/make_metric_fixtures.py
// → tests/trainers/fixtures/metrics/): ROUGE-L and its tokenizer vs rouge_score, the Porter stemmer
// vs NLTK, ks_2samp / kstwo.sf / hmean vs scipy, roc_auc vs sklearn, Min-K% vs open-unlearning's
// rule. Every case is compared and counted; the worst errors are printed (docs/metrics.md).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/io/json.h"
#include "eval/stats.h"
#include "eval/text_metrics.h"
#include "tests/common/compare.h"
#include "tests/common/paths.h"

namespace lethe::eval {
namespace {

using lethe::testing::nan_max;
using lethe::testing::within;
using nlohmann::json;

constexpr double kRougeAbs = 1e-12;  // ROUGE P/R/F: rationals, expected to the last bit
constexpr double kPvalueRel = 1e-9;  // KS p-values and kstwo.sf, relative ...
// ... except far below any significance level: under 1e-300 the tails are subnormal numbers, and
// xsf's own double-double sum keeps only a few digits of them (it even returns 0 where the terms
// underflow one by one).
constexpr double kPvalueAbs = 1e-300;
constexpr double kStatisticAbs = 1e-15;

const json& fixture(const std::string& name) {
  static std::map<std::string, json> cache;
  auto it = cache.find(name);
  if (it == cache.end())
    it = cache
             .emplace(name, io::read_json_file(lethe::testing::source_dir() +
                                               "/tests/trainers/fixtures/metrics/" + name))
             .first;
  return it->second;
}

// A sample stored as a list, or as the formula ((i·mul + add) mod mod) + shift for i < n.
std::vector<double> sample(const json& spec) {
  if (spec.is_array()) return spec.get<std::vector<double>>();
  const int64_t n = spec.at("n"), mul = spec.at("mul"), add = spec.at("add"), mod = spec.at("mod"),
                shift = spec.at("shift");
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<double>((i * mul + add) % mod + shift);
  return v;
}

// |got − want| / |want| (0 when both are 0; NaN stays NaN).
double rel_error(double got, double want) {
  if (got == want) return 0.0;
  return std::abs(got - want) / std::abs(want);
}

TEST(MetricPorter, StemsEveryWordAsNltk) {
  const json& f = fixture("porter.json");
  const auto words = f.at("words").get<std::vector<std::string>>();
  const auto stems = f.at("stems").get<std::vector<std::string>>();
  ASSERT_EQ(words.size(), stems.size());
  ASSERT_EQ(words.size(), 4273u) << "the fixture changed: update the expected count";
  size_t wrong = 0;
  for (size_t i = 0; i < words.size(); ++i) {
    const std::string got = porter_stem(words[i]);
    if (got != stems[i] && ++wrong <= 20)
      ADD_FAILURE() << "'" << words[i] << "': lethe '" << got << "', NLTK '" << stems[i] << "'";
  }
  EXPECT_EQ(wrong, 0u) << "of " << words.size() << " words";
  std::printf("[metrics] porter: %zu words, %zu differ from NLTK\n", words.size(), wrong);
}

TEST(MetricPorter, LowerCasesAndKeepsShortWords) {
  EXPECT_EQ(porter_stem("Generously"), "gener");
  EXPECT_EQ(porter_stem("DYING"), "die");
  EXPECT_EQ(porter_stem("is"), "is");
  EXPECT_EQ(porter_stem("a"), "a");
  EXPECT_EQ(porter_stem(""), "");
}

TEST(MetricRouge, TokenizesAsRougeScore) {
  const json& cases = fixture("rouge.json").at("tokenize");
  ASSERT_EQ(cases.size(), 63u) << "the fixture changed: update the expected count";
  size_t compared = 0;
  for (const json& c : cases) {
    const std::string text = c.at("text");
    EXPECT_EQ(rouge_tokenize(text, true), c.at("stem").get<std::vector<std::string>>())
        << "stemmed: '" << text << "'";
    EXPECT_EQ(rouge_tokenize(text, false), c.at("plain").get<std::vector<std::string>>())
        << "plain: '" << text << "'";
    compared += 2;
  }
  EXPECT_EQ(compared, 2 * cases.size());
}

TEST(MetricRouge, RougeLMatchesRougeScore) {
  const json& pairs = fixture("rouge.json").at("pairs");
  ASSERT_EQ(pairs.size(), 446u) << "the fixture changed: update the expected count";
  double worst = 0;
  size_t compared = 0, nonzero = 0;
  for (const json& c : pairs) {
    const std::string t = c.at("target"), p = c.at("prediction");
    for (const bool stem : {true, false}) {
      const auto want = c.at(stem ? "stem" : "plain").get<std::vector<double>>();
      const RougeScore got = rouge_l(t, p, stem);
      const double got3[3] = {got.precision, got.recall, got.fmeasure};
      for (int k = 0; k < 3; ++k) {
        worst = nan_max(worst, std::abs(got3[k] - want[k]));
        EXPECT_TRUE(within(got3[k], want[k], kRougeAbs, 0))
            << (stem ? "stem" : "plain") << " [P,R,F][" << k << "]: lethe " << got3[k]
            << ", rouge_score " << want[k] << "\n  target: '" << t << "'\n  prediction: '" << p
            << "'";
        ++compared;
        nonzero += want[k] != 0;
      }
    }
  }
  EXPECT_EQ(compared, 6 * pairs.size());
  EXPECT_GT(nonzero, compared / 2) << "too few non-trivial scores";
  EXPECT_TRUE(within(worst, 0, kRougeAbs, 0));
  std::printf("[metrics] rouge-L: %zu numbers, worst abs error %.3g\n", compared, worst);
}

TEST(MetricRouge, TokenOverloadAgreesAndEmptySidesScoreZero) {
  const auto t = rouge_tokenize("The author's father was a civil engineer.", true);
  const auto p = rouge_tokenize("Her father worked as an engineer", true);
  const RougeScore a = rouge_l_tokens(t, p);
  const RougeScore b = rouge_l("The author's father was a civil engineer.",
                               "Her father worked as an engineer", true);
  EXPECT_EQ(a.recall, b.recall);
  EXPECT_EQ(a.precision, 2.0 / 6.0);  // LCS {father, engineer}
  const RougeScore z = rouge_l("...", "something", false);
  EXPECT_EQ(z.precision, 0.0);
  EXPECT_EQ(z.recall, 0.0);
  EXPECT_EQ(z.fmeasure, 0.0);
}

TEST(MetricKs, TwoSampleMatchesScipy) {
  const json& cases = fixture("ks.json").at("cases");
  ASSERT_EQ(cases.size(), 103u) << "the fixture changed: update the expected count";
  std::map<std::string, int> paths;
  std::map<std::string, double> worst_p;
  double worst_d = 0;
  size_t compared = 0;
  for (const json& c : cases) {
    const std::string name = c.at("name"), path = c.at("path");
    const KsResult got = ks_2samp(sample(c.at("a")), sample(c.at("b")));
    const double want_d = c.at("statistic"), want_p = c.at("pvalue");
    worst_d = nan_max(worst_d, std::abs(got.statistic - want_d));
    if (want_p >= kPvalueAbs || got.pvalue >= kPvalueAbs)
      worst_p[path] = nan_max(worst_p[path], rel_error(got.pvalue, want_p));
    EXPECT_TRUE(within(got.statistic, want_d, kStatisticAbs, 0))
        << name << ": D lethe " << got.statistic << ", scipy " << want_d;
    EXPECT_TRUE(within(got.pvalue, want_p, kPvalueAbs, kPvalueRel))
        << name << " (" << path << "): p lethe " << got.pvalue << ", scipy " << want_p;
    ++paths[path];
    compared += 2;
  }
  EXPECT_EQ(compared, 2 * cases.size());
  EXPECT_GE(paths["exact"], 60);
  EXPECT_GE(paths["exact->asymp"], 5);
  EXPECT_GE(paths["asymp"], 15);
  for (const auto& [path, w] : worst_p)
    std::printf("[metrics] ks_2samp %-12s: %d cases, worst p-value rel error %.3g\n", path.c_str(),
                paths[path], w);
  std::printf("[metrics] ks_2samp statistic: worst abs error %.3g\n", worst_d);
}

TEST(MetricKs, KolmogorovSfMatchesScipyKstwo) {
  const json& cases = fixture("ks.json").at("kstwo");
  ASSERT_EQ(cases.size(), 490u) << "the fixture changed: update the expected count";
  std::map<std::string, int> branches;
  std::map<std::string, double> worst;
  size_t compared = 0;
  for (const json& c : cases) {
    const int64_t n = c.at("n");
    const double x = c.at("x"), want = c.at("sf");
    const std::string branch = c.at("branch");
    const double got = kolmogorov_sf(n, x);
    if (want >= kPvalueAbs || got >= kPvalueAbs)
      worst[branch] = nan_max(worst[branch], rel_error(got, want));
    EXPECT_TRUE(within(got, want, kPvalueAbs, kPvalueRel))
        << "kstwo.sf(" << x << ", " << n << ") [" << branch << "]: lethe " << got << ", scipy "
        << want;
    ++branches[branch];
    ++compared;
  }
  EXPECT_EQ(compared, cases.size());
  // Every algorithm scipy's _kolmogn can choose is exercised.
  for (const char* b : {"ruben_gambino_low", "ruben_gambino_high", "smirnov", "dmtw", "pomeranz",
                        "pelz_good", "zero", "bounds"})
    EXPECT_GE(branches[b], 5) << b;
  for (const auto& [b, count] : branches)
    std::printf("[metrics] kstwo.sf %-18s: %3d cases, worst rel error %.3g (values >= 1e-300)\n",
                b.c_str(), count, worst[b]);
}

TEST(MetricKs, NanOrEmptySampleGivesNan) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (const KsResult r : {ks_2samp({1, 2, nan}, {1, 2, 3}), ks_2samp({}, {1, 2})}) {
    EXPECT_TRUE(std::isnan(r.statistic));
    EXPECT_TRUE(std::isnan(r.pvalue));
  }
  const KsResult same = ks_2samp({1, 2, 3}, {3, 2, 1});
  EXPECT_EQ(same.statistic, 0.0);
  EXPECT_EQ(same.pvalue, 1.0);
}

TEST(MetricAuc, MatchesSklearnAndTheExactU) {
  const json& cases = fixture("stats.json").at("auc");
  ASSERT_EQ(cases.size(), 15u) << "the fixture changed: update the expected count";
  double worst_ulps = 0;
  size_t compared = 0;
  for (const json& c : cases) {
    const auto s0 = c.at("s0").get<std::vector<double>>();
    const auto s1 = c.at("s1").get<std::vector<double>>();
    const double got = roc_auc(s0, s1);
    // The exact value 2U / (2 n0 n1), rounded once; sklearn's trapezoid sum can be an ulp or two
    // away from it.
    const double exact = c.at("num").get<double>() / c.at("den").get<double>();
    const double sklearn = c.at("auc");
    EXPECT_EQ(got, exact) << s0.size() << " vs " << s1.size() << " scores";
    const double ulps = std::abs(got - sklearn) / (std::nextafter(sklearn, 2.0) - sklearn);
    worst_ulps = nan_max(worst_ulps, ulps);
    EXPECT_LE(ulps, 2.0) << "lethe " << got << ", sklearn " << sklearn;
    compared += 2;
  }
  EXPECT_EQ(compared, 2 * cases.size());
  std::printf("[metrics] roc_auc: %zu cases, exact U; worst distance to sklearn %.0f ulp\n",
              cases.size(), worst_ulps);
}

TEST(MetricAuc, RejectsAMissingClassOrNan) {
  EXPECT_THROW(roc_auc({}, {1.0}), lethe::Error);
  EXPECT_THROW(roc_auc({1.0}, {}), lethe::Error);
  EXPECT_THROW(roc_auc({1.0}, {std::numeric_limits<double>::quiet_NaN()}), lethe::Error);
}

TEST(MetricHarmonicMean, MatchesScipyHmean) {
  const json& cases = fixture("stats.json").at("hmean");
  ASSERT_EQ(cases.size(), 14u) << "the fixture changed: update the expected count";
  size_t compared = 0;
  for (const json& c : cases) {
    const auto v = c.at("values").get<std::vector<double>>();
    EXPECT_EQ(harmonic_mean(v), c.at("hmean").get<double>()) << v.size() << " values";
    ++compared;
  }
  EXPECT_EQ(compared, cases.size());
  EXPECT_TRUE(std::isnan(harmonic_mean({})));
  EXPECT_TRUE(std::isnan(harmonic_mean({1.0, -1.0})));
  EXPECT_EQ(harmonic_mean({0.5, 0.0, 0.9}), 0.0);
}

TEST(MetricMinK, MatchesOpenUnlearningRule) {
  const json& cases = fixture("stats.json").at("min_k");
  ASSERT_EQ(cases.size(), 13u) << "the fixture changed: update the expected count";
  size_t compared = 0;
  for (const json& c : cases) {
    const auto lp = c.at("logprobs").get<std::vector<double>>();
    const auto ks = c.at("k").get<std::vector<double>>();
    const auto want = c.at("mean").get<std::vector<double>>();
    ASSERT_EQ(ks.size(), want.size());
    for (size_t i = 0; i < ks.size(); ++i) {
      EXPECT_EQ(min_k_percent(lp, ks[i]), want[i]) << lp.size() << " tokens, k = " << ks[i];
      ++compared;
    }
  }
  EXPECT_EQ(compared, 7 * cases.size());
  EXPECT_THROW(min_k_percent({-1.0}, 0.0), lethe::Error);
  EXPECT_THROW(min_k_percent({-1.0}, 1.5), lethe::Error);
}

}  // namespace
}  // namespace lethe::eval
