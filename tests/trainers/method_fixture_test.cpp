// Every method's update against an independent PyTorch + transformers implementation of
// docs/methods.md (tools/fixtures/make_method_fixtures.py → tests/trainers/fixtures/methods/):
// the weights written to output.dir after the case's max_steps steps, and at every step each
// objective's loss and gradient norm (relative to the reference; a term that is zero by
// construction, listed in zero_terms, must be zero), the rule's weights (MGDA λ, NGDiff 1/‖g‖),
// the MGDA exclusions, and GeN's probe values.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "engine/io/json.h"
#include "engine/io/safetensors.h"
#include "tests/common/compare.h"
#include "tests/common/device.h"
#include "tests/common/paths.h"
#include "tests/common/temp_dir.h"
#include "tests/trainers/fixture_steps.h"
#include "trainers/config.h"
#include "trainers/trainer.h"

namespace lethe::trainers {
namespace {

using lethe::testing::nan_max;
using lethe::testing::within;

const std::string kDir = "tests/trainers/fixtures/methods";
// The same methods on a tiny Llama (GQA, untied head): make_method_fixtures.py --family llama.
const std::string kLlamaDir = "tests/trainers/fixtures/methods_llama";

const nlohmann::json& reference(const std::string& dir = kDir) {
  static std::map<std::string, nlohmann::json> cache;
  auto it = cache.find(dir);
  if (it == cache.end()) it = cache.emplace(dir, io::read_json_file(dir + "/reference.json")).first;
  return it->second;
}

const nlohmann::json& find_case(const std::string& name, const std::string& dir = kDir) {
  for (const nlohmann::json& c : reference(dir).at("cases"))
    if (c.at("name") == name) return c;
  throw std::runtime_error("no fixture case " + name + " in " + dir);
}

std::map<std::string, std::vector<float>> read_tensors(const std::string& path) {
  std::map<std::string, std::vector<float>> out;
  const io::SafetensorsFile f = io::SafetensorsFile::open(path);
  for (const io::TensorInfo& t : f.tensors()) {
    EXPECT_EQ(t.dtype, DType::f32) << path << ": " << t.name;
    std::vector<float> v(static_cast<size_t>(t.numel()));
    std::memcpy(v.data(), t.data, v.size() * sizeof(float));
    out[t.name] = std::move(v);
  }
  return out;
}

struct RunResult {
  std::vector<StepRecord> steps;
  std::string out;
};

// The case's steps as the fixture lists them: earlier_steps, then the case itself (its top-level

// A fixture term below this tests nothing (the generator's MIN_GRAD_NORM).
constexpr double kMinGradNorm = 1e-2;

RunResult run_case(const nlohmann::json& c, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> sets = c.at("set").get<std::vector<std::string>>();
  const std::string out = lethe::testing::scratch_dir("method", c.at("name").get<std::string>());
  sets.push_back("output.dir=" + out);
  sets.push_back("trainer.threads=2");
  for (const std::string& e : lethe::testing::test_device_sets()) sets.push_back(e);
  for (const std::string& e : extra) sets.push_back(e);
  const RunKind kind = c.at("command") == "finetune" ? RunKind::finetune : RunKind::unlearn;
  std::ostringstream log;
  TrainerOptions o;
  o.log = &log;
  Trainer t(load_config("", sets, kind), o);
  EXPECT_EQ(t.run(), fixture_max_steps(c));
  return {t.steps(), out};
}

// The update lethe wrote vs the reference's: max |Δ_lethe − Δ_ref| ≤ 1e-4 · max |Δ_ref|, over every
// tensor. `loose` elements (AdamW steps on a gradient that is zero up to rounding) may differ by
// lr.
void expect_same_update(const nlohmann::json& c, const std::string& out,
                        const std::string& dir = kDir) {
  const auto before = read_tensors(dir + "/model/model.safetensors");
  const auto want = read_tensors(dir + "/" + c.at("expected").get<std::string>());
  const auto got = read_tensors(out + "/model.safetensors");
  ASSERT_EQ(got.size(), want.size());
  ASSERT_EQ(want.size(), reference(dir).at("parameters").size());
  std::map<std::string, std::vector<int64_t>> loose;
  if (c.contains("adamw_fragile"))
    for (const auto& [name, idx] : c["adamw_fragile"]["elements"].items())
      loose[name] = idx.get<std::vector<int64_t>>();
  double max_ref = 0;
  for (const auto& [name, w] : want)
    for (size_t i = 0; i < w.size(); ++i)
      max_ref = nan_max(max_ref, std::fabs(double(w[i]) - double(before.at(name)[i])));
  ASSERT_NEAR(max_ref, c.at("max_abs_update").get<double>(), 1e-6 + 1e-4 * max_ref);
  ASSERT_GT(max_ref, 1e-3) << "the reference update is trivially small";
  const double lr = c.at("lr").get<double>();
  double worst = 0;
  std::string worst_at;
  int64_t compared = 0;
  for (const auto& [name, w] : want) {
    ASSERT_TRUE(got.count(name)) << "lethe did not write " << name;
    const auto& g = got.at(name);
    const auto& b = before.at(name);
    ASSERT_EQ(g.size(), w.size()) << name;
    std::vector<bool> is_loose(w.size(), false);
    if (loose.count(name))
      for (int64_t i : loose[name]) is_loose[static_cast<size_t>(i)] = true;
    // k_proj's bias shifts every score of a query row equally, so softmax cancels it: its
    // gradient is zero up to rounding in both implementations, and AdamW's first step
    // (≈ lr·g/(|g| + eps)) turns that rounding into an update of either sign.
    if (!loose.empty() && name.find("k_proj.bias") != std::string::npos)
      is_loose.assign(w.size(), true);
    for (size_t i = 0; i < w.size(); ++i) {
      const double dl = double(g[i]) - double(b[i]), dr = double(w[i]) - double(b[i]);
      const double err = std::fabs(dl - dr);
      ++compared;
      if (is_loose[i]) {
        EXPECT_LE(err, lr) << name << "[" << i << "]";
        continue;
      }
      if (!(err <= worst) && !std::isnan(worst)) worst_at = name + "[" + std::to_string(i) + "]";
      worst = nan_max(worst, err);  // a NaN is kept, never forgotten by a later finite error
    }
  }
  EXPECT_EQ(compared, reference(dir).at("numel").get<int64_t>());
  EXPECT_TRUE(within(worst, 0, 1e-4 * max_ref, 0))
      << c.at("name") << ": worst update error " << worst << " at " << worst_at
      << " (max reference update " << max_ref << ")";
}

// One step's scalars: `s` is an earlier_steps entry or the case itself (the last step). Losses and
// gradient norms are compared relatively (the fixture's are O(1), see FixtureTermsAreNotNearZero);
// a term that is zero by construction (zero_terms: a KL to the starting model at step 1) must have
// a gradient below 1e-6 and a loss below 1e-6 in absolute terms.
void expect_scalars(const nlohmann::json& s, const StepRecord& r) {
  expect_step_scalars(s, r);
  if (s.contains("gen")) {
    const nlohmann::json& g = s["gen"];
    ASSERT_TRUE(r.hook.is_object()) << "no GeN probe on this step";
    EXPECT_EQ(r.hook.at("accepted").get<bool>(), g.at("accepted").get<bool>());
    EXPECT_TRUE(
        within(r.hook.at("loss_minus").get<double>(), g.at("L_minus").get<double>(), 1e-6, 1e-4));
    EXPECT_TRUE(
        within(r.hook.at("loss_zero").get<double>(), g.at("L_0").get<double>(), 1e-6, 1e-4));
    EXPECT_TRUE(
        within(r.hook.at("loss_plus").get<double>(), g.at("L_plus").get<double>(), 1e-6, 1e-4));
    EXPECT_TRUE(within(r.hook.at("h").get<double>(), g.at("H").get<double>(), 1e-5, 1e-3))
        << r.hook.at("h").get<double>();
    EXPECT_TRUE(within(r.hook.at("g").get<double>(), g.at("G").get<double>(), 1e-5, 1e-3))
        << r.hook.at("g").get<double>();
    EXPECT_TRUE(
        within(r.hook.at("lr_after").get<double>(), g.at("new_lr").get<double>(), 1e-7, 1e-4));
    EXPECT_TRUE(within(r.lr, s.at("lr_applied").get<double>(), 1e-7, 1e-4));
  }
}

// Every step's scalars (earlier_steps, then the case's own for the last step) and the weights after
// the last step.
void expect_case_equals_pytorch(const std::string& dir, const std::string& name) {
  const nlohmann::json& c = find_case(name, dir);
  RunResult r = run_case(c);
  const std::vector<const nlohmann::json*> want = fixture_steps(c);
  ASSERT_EQ(static_cast<int64_t>(want.size()), fixture_max_steps(c));
  ASSERT_EQ(static_cast<int64_t>(r.steps.size()), fixture_max_steps(c));
  for (size_t s = 0; s < want.size(); ++s) {
    SCOPED_TRACE("step " + std::to_string(s + 1) + " of " + std::to_string(want.size()));
    expect_scalars(*want[s], r.steps[s]);
  }
  expect_same_update(c, r.out, dir);
}

class MethodFixture : public ::testing::TestWithParam<std::string> {};
TEST_P(MethodFixture, EveryStepEqualsPyTorch) {
  expect_case_equals_pytorch(kDir, GetParam());
}
INSTANTIATE_TEST_SUITE_P(Torch, MethodFixture, ::testing::ValuesIn(fixture_case_names(kDir)),
                         [](const auto& info) { return info.param; });

// The Llama family through the same trainers: GA, NPO, GradDiff+KL, NGDiff, MOLLM, fine-tuning and
// AdamW with clipping on a tiny LlamaForCausalLM.
class LlamaMethodFixture : public ::testing::TestWithParam<std::string> {};
TEST_P(LlamaMethodFixture, EveryStepEqualsPyTorch) {
  expect_case_equals_pytorch(kLlamaDir, GetParam());
}
INSTANTIATE_TEST_SUITE_P(Torch, LlamaMethodFixture,
                         ::testing::ValuesIn(fixture_case_names(kLlamaDir)),
                         [](const auto& info) { return info.param; });

TEST(MethodFixtureCases, TheLlamaFixtureCoversTheIssuesMethods) {
  std::set<std::string> names;
  for (const nlohmann::json& c : reference(kLlamaDir).at("cases")) names.insert(c.at("name"));
  for (const char* m : {"ga", "npo", "ngdiff", "mollm_ref", "graddiff_kl", "finetune"})
    EXPECT_TRUE(names.count(m)) << m;
  const nlohmann::json cfg = io::read_json_file(kLlamaDir + "/model/config.json");
  EXPECT_EQ(cfg.at("model_type"), "llama");
  EXPECT_LT(cfg.at("num_key_value_heads").get<int>(), cfg.at("num_attention_heads").get<int>());
}

TEST(MethodFixtureCases, EveryMethodIsCovered) {
  std::map<std::string, int> seen;
  for (const nlohmann::json& c : reference().at("cases")) {
    for (const std::string& s : c.at("set").get<std::vector<std::string>>())
      if (s.rfind("method.name=", 0) == 0) ++seen[s.substr(12)];
    if (c.at("command") == "finetune") ++seen["finetune"];
  }
  for (const char* m :
       {"ga", "graddiff", "ga_mismatch_kl", "npo", "simnpo", "mollm", "ngdiff", "finetune"})
    EXPECT_GT(seen[m], 0) << m << " has no fixture case";
  EXPECT_EQ(reference().at("cases").size(), 23u);
  // Multi-step cases exist, and each says how many steps in its recipe too.
  int multi = 0;
  for (const nlohmann::json& c : reference().at("cases")) {
    const size_t n = static_cast<size_t>(fixture_max_steps(c));
    if (n > 1) ++multi;
    EXPECT_EQ(fixture_steps(c).size(), n) << c.at("name");
    const auto sets = c.at("set").get<std::vector<std::string>>();
    EXPECT_NE(std::find(sets.begin(), sets.end(), "trainer.max_steps=" + std::to_string(n)),
              sets.end())
        << c.at("name");
  }
  EXPECT_EQ(multi, 3);
}

// A term whose gradient is ~0 in its fixture is not tested by any tolerance (SimNPO's saturated
// forget term once had 3.7e-9, a KL to the starting model 9e-17): every objective of every step of
// every case has a gradient norm of at least 1e-2, or is listed in that step's zero_terms (zero by
// construction, checked as zero).
TEST(MethodFixtureCases, FixtureTermsAreNotNearZero) {
  int zero = 0, terms = 0;
  for (const nlohmann::json& c : reference().at("cases")) {
    for (const nlohmann::json* s : fixture_steps(c)) {
      const std::set<std::string> z = fixture_zero_terms(*s);
      std::set<std::string> names;
      for (const nlohmann::json& o : s->at("objectives")) {
        const std::string n = o.at("name");
        names.insert(n);
        ++terms;
        if (z.count(n)) {
          ++zero;
          EXPECT_TRUE(within(o.at("grad_norm").get<double>(), 0, 1e-12, 0))
              << c.at("name") << ": " << n;
        } else {
          EXPECT_GE(o.at("grad_norm").get<double>(), kMinGradNorm)
              << c.at("name") << ": " << n << " is near zero and not a zero term";
        }
      }
      for (const std::string& n : z) EXPECT_TRUE(names.count(n)) << c.at("name") << ": " << n;
    }
  }
  // mollm_start, ga_mismatch_kl, and step 1 of the three two-step cases.
  EXPECT_EQ(zero, 5);
  EXPECT_GT(terms, 50);
}

// The MOLLM cases do not depend on method.normalize_grads' default: each sets it.
TEST(MethodFixtureCases, EveryMollmCaseSetsNormalizeGrads) {
  int n = 0;
  for (const nlohmann::json& c : reference().at("cases")) {
    const auto sets = c.at("set").get<std::vector<std::string>>();
    if (std::find(sets.begin(), sets.end(), "method.name=mollm") == sets.end()) continue;
    ++n;
    int given = 0;
    for (const std::string& s : sets) given += s.rfind("method.normalize_grads=", 0) == 0;
    EXPECT_EQ(given, 1) << c.at("name");
  }
  EXPECT_EQ(n, 7);
}

// Plain MGDA after step 1 (mollm_start_step2_plain): the KL gradient, small but above the exclusion
// threshold, takes most of the weight and the direction drops well below the forget gradient;
// normalised (mollm_start_step2, the default) the three share the weight and the direction is
// several times longer.
TEST(MethodFixtureCases, PlainMgdaCollapsesAtStepTwoAndNormalisedDoesNot) {
  const nlohmann::json& plain = find_case("mollm_start_step2_plain");
  const nlohmann::json& norm = find_case("mollm_start_step2");
  EXPECT_GT(plain["mgda"]["lambda"][1].get<double>(), 0.7);
  EXPECT_LT(plain.at("direction_norm").get<double>(),
            0.4 * plain["objectives"][0]["grad_norm"].get<double>());
  for (const nlohmann::json& l : norm["mgda"]["lambda"]) EXPECT_GT(l.get<double>(), 0.2);
  EXPECT_GT(norm.at("direction_norm").get<double>(), 5 * plain.at("direction_norm").get<double>());
}

// batch_size 2 × grad_accum 2 computes the update of batch_size 4 (losses normalised by the token
// count of the whole accumulated batch).
TEST(GradientAccumulation, TwoMicroBatchesEqualOneBatchOfFour) {
  const nlohmann::json& c = find_case("ga_accum");
  RunResult r = run_case(c, {"trainer.batch_size=2", "trainer.grad_accum=2"});
  ASSERT_EQ(fixture_max_steps(c), 1);
  ASSERT_EQ(r.steps.size(), 1u);
  expect_scalars(c, r.steps[0]);
  expect_same_update(c, r.out);
}

}  // namespace
}  // namespace lethe::trainers
