// Every method's one-step update against an independent PyTorch + transformers implementation of
// docs/methods.md (tools/fixtures/make_method_fixtures.py → tests/trainers/fixtures/methods/):
// the weights written to output.dir, each objective's loss and gradient norm, the rule's weights
// (MGDA λ, NGDiff 1/‖g‖), the MGDA exclusions, and GeN's probe values.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "engine/io/json.h"
#include "engine/io/safetensors.h"
#include "tests/common/compare.h"
#include "tests/common/device.h"
#include "tests/common/paths.h"
#include "tests/common/temp_dir.h"
#include "trainers/config.h"
#include "trainers/trainer.h"

namespace lethe::trainers {
namespace {

using lethe::testing::nan_max;
using lethe::testing::within;

const std::string kDir = "tests/trainers/fixtures/methods";

const nlohmann::json& reference() {
  static const nlohmann::json r = io::read_json_file(kDir + "/reference.json");
  return r;
}

const nlohmann::json& find_case(const std::string& name) {
  for (const nlohmann::json& c : reference().at("cases"))
    if (c.at("name") == name) return c;
  throw std::runtime_error("no fixture case " + name);
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
  EXPECT_EQ(t.run(), 1);
  return {t.steps(), out};
}

// The update lethe wrote vs the reference's: max |Δ_lethe − Δ_ref| ≤ 1e-4 · max |Δ_ref|, over every
// tensor. `loose` elements (AdamW steps on a gradient that is zero up to rounding) may differ by
// lr.
void expect_same_update(const nlohmann::json& c, const std::string& out) {
  const auto before = read_tensors(kDir + "/model/model.safetensors");
  const auto want = read_tensors(kDir + "/" + c.at("expected").get<std::string>());
  const auto got = read_tensors(out + "/model.safetensors");
  ASSERT_EQ(got.size(), want.size());
  ASSERT_EQ(want.size(), reference().at("parameters").size());
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
  EXPECT_EQ(compared, reference().at("numel").get<int64_t>());
  EXPECT_TRUE(within(worst, 0, 1e-4 * max_ref, 0))
      << c.at("name") << ": worst update error " << worst << " at " << worst_at
      << " (max reference update " << max_ref << ")";
}

void expect_scalars(const nlohmann::json& c, const StepRecord& r) {
  const auto& objs = c.at("objectives");
  ASSERT_EQ(r.losses.size(), objs.size());
  for (size_t k = 0; k < objs.size(); ++k) {
    const nlohmann::json& o = objs[k];
    const std::string n = o.at("name");
    EXPECT_TRUE(within(r.losses[k], o.at("loss").get<double>(), 1e-6, 1e-4))
        << n << " loss " << r.losses[k] << " vs " << o.at("loss");
    EXPECT_TRUE(within(r.grad_norms[k], o.at("grad_norm").get<double>(), 1e-6, 1e-4))
        << n << " grad norm " << r.grad_norms[k] << " vs " << o.at("grad_norm");
    EXPECT_TRUE(within(r.weights[k], o.at("weight").get<double>(), 1e-5, 1e-3))
        << n << " weight " << r.weights[k] << " vs " << o.at("weight");
  }
  EXPECT_TRUE(within(r.direction_norm, c.at("direction_norm").get<double>(), 1e-6, 1e-4))
      << "direction norm " << r.direction_norm << " vs " << c.at("direction_norm");
  if (c.contains("mgda")) {
    std::vector<bool> excluded(objs.size(), false);
    for (int i : c["mgda"]["excluded"]) excluded[static_cast<size_t>(i)] = true;
    EXPECT_EQ(r.excluded, excluded);
    const std::string sol = c["mgda"]["solution"];
    EXPECT_EQ(r.solution.substr(0, sol.size()), sol) << "MGDA solution " << r.solution;
  }
  if (c.contains("gen")) {
    const nlohmann::json& g = c["gen"];
    ASSERT_TRUE(r.gen_probed);
    EXPECT_EQ(r.gen_accepted, g.at("accepted").get<bool>());
    EXPECT_TRUE(within(r.gen_loss_minus, g.at("L_minus").get<double>(), 1e-6, 1e-4));
    EXPECT_TRUE(within(r.gen_loss_zero, g.at("L_0").get<double>(), 1e-6, 1e-4));
    EXPECT_TRUE(within(r.gen_loss_plus, g.at("L_plus").get<double>(), 1e-6, 1e-4));
    EXPECT_TRUE(within(r.gen_h, g.at("H").get<double>(), 1e-5, 1e-3)) << r.gen_h;
    EXPECT_TRUE(within(r.gen_g, g.at("G").get<double>(), 1e-5, 1e-3)) << r.gen_g;
    EXPECT_TRUE(within(r.gen_lr_after, g.at("new_lr").get<double>(), 1e-7, 1e-4));
    EXPECT_TRUE(within(r.lr, c.at("lr_applied").get<double>(), 1e-7, 1e-4));
  }
}

class MethodFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(MethodFixture, OneStepEqualsPyTorch) {
  const nlohmann::json& c = find_case(GetParam());
  RunResult r = run_case(c);
  ASSERT_EQ(r.steps.size(), 1u);
  expect_scalars(c, r.steps[0]);
  expect_same_update(c, r.out);
}

std::vector<std::string> case_names() {
  std::vector<std::string> names;
  const nlohmann::json r =
      io::read_json_file(lethe::testing::source_dir() + "/" + kDir + "/reference.json");
  for (const nlohmann::json& c : r.at("cases")) names.push_back(c.at("name"));
  return names;
}

INSTANTIATE_TEST_SUITE_P(Torch, MethodFixture, ::testing::ValuesIn(case_names()),
                         [](const auto& info) { return info.param; });

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
  EXPECT_EQ(reference().at("cases").size(), 20u);
}

// batch_size 2 × grad_accum 2 computes the update of batch_size 4 (losses normalised by the token
// count of the whole accumulated batch).
TEST(GradientAccumulation, TwoMicroBatchesEqualOneBatchOfFour) {
  const nlohmann::json& c = find_case("ga_accum");
  RunResult r = run_case(c, {"trainer.batch_size=2", "trainer.grad_accum=2"});
  ASSERT_EQ(r.steps.size(), 1u);
  expect_scalars(c, r.steps[0]);
  expect_same_update(c, r.out);
}

}  // namespace
}  // namespace lethe::trainers
