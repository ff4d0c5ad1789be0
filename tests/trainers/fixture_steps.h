// Shared by the method and LoRA fixture tests: one training step's observable scalars against a
// PyTorch/peft fixture step (tools/fixtures/make_method_fixtures.py, make_lora_fixtures.py).
#pragma once

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "engine/io/json.h"
#include "tests/common/compare.h"
#include "tests/common/paths.h"
#include "trainers/trainer.h"

namespace lethe::trainers {

// The case names of a fixture's reference.json (`dir` relative to the source tree), for
// INSTANTIATE_TEST_SUITE_P.
inline std::vector<std::string> fixture_case_names(const std::string& dir) {
  std::vector<std::string> names;
  const nlohmann::json r =
      io::read_json_file(lethe::testing::source_dir() + "/" + dir + "/reference.json");
  for (const nlohmann::json& c : r.at("cases")) names.push_back(c.at("name"));
  return names;
}

// A case's steps as the fixture lists them: earlier_steps, then the case itself (its top-level
// fields describe the last step); and its step count.
inline std::vector<const nlohmann::json*> fixture_steps(const nlohmann::json& c) {
  std::vector<const nlohmann::json*> out;
  if (c.contains("earlier_steps"))
    for (const nlohmann::json& s : c["earlier_steps"]) out.push_back(&s);
  out.push_back(&c);
  return out;
}
inline int64_t fixture_max_steps(const nlohmann::json& c) {
  return c.contains("max_steps") ? c["max_steps"].get<int64_t>() : 1;
}

// The objectives a fixture step lists as zero by construction (a KL to the starting model at
// step 1).
inline std::set<std::string> fixture_zero_terms(const nlohmann::json& s) {
  std::set<std::string> out;
  if (s.contains("zero_terms"))
    for (const nlohmann::json& n : s["zero_terms"]) out.insert(n.get<std::string>());
  return out;
}

// Losses, gradient norms and the direction norm relative to the fixture's (every fixture term is
// O(1): the FixtureTermsAreNotNearZero tests); a zero_terms entry must be below 1e-6 in absolute
// terms; the rule's weights; MGDA's exclusions and solution kind.
inline void expect_step_scalars(const nlohmann::json& s, const StepRecord& r) {
  using lethe::testing::within;
  const auto& objs = s.at("objectives");
  const std::set<std::string> zero = fixture_zero_terms(s);
  ASSERT_EQ(r.losses.size(), objs.size());
  ASSERT_EQ(r.grad_norms.size(), objs.size());
  ASSERT_EQ(r.weights.size(), objs.size());
  for (size_t k = 0; k < objs.size(); ++k) {
    const nlohmann::json& o = objs[k];
    const std::string n = o.at("name");
    if (zero.count(n)) {
      EXPECT_TRUE(within(r.losses[k], 0, 1e-6, 0)) << n << " loss " << r.losses[k];
      EXPECT_TRUE(within(r.grad_norms[k], 0, 1e-6, 0))
          << n << " grad norm " << r.grad_norms[k] << " is not zero";
    } else {
      EXPECT_TRUE(within(r.losses[k], o.at("loss").get<double>(), 0, 1e-4))
          << n << " loss " << r.losses[k] << " vs " << o.at("loss");
      EXPECT_TRUE(within(r.grad_norms[k], o.at("grad_norm").get<double>(), 0, 1e-4))
          << n << " grad norm " << r.grad_norms[k] << " vs " << o.at("grad_norm");
    }
    EXPECT_TRUE(within(r.weights[k], o.at("weight").get<double>(), 1e-5, 1e-3))
        << n << " weight " << r.weights[k] << " vs " << o.at("weight");
  }
  EXPECT_TRUE(within(r.direction_norm, s.at("direction_norm").get<double>(), 0, 1e-4))
      << "direction norm " << r.direction_norm << " vs " << s.at("direction_norm");
  if (s.contains("mgda")) {
    std::vector<bool> excluded(objs.size(), false);
    for (int i : s["mgda"]["excluded"]) excluded[static_cast<size_t>(i)] = true;
    EXPECT_EQ(r.excluded, excluded);
    const std::string sol = s["mgda"]["solution"];
    EXPECT_EQ(r.solution.substr(0, sol.size()), sol) << "MGDA solution " << r.solution;
  }
}

}  // namespace lethe::trainers
