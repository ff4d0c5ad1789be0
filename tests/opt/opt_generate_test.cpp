// Generation: greedy tokens (KV cache, left-padded batch) identical to transformers' generate for
// every fixture; sampling is seeded and reproducible; the top-k / top-p filters; bad options.
#include <cmath>
#include <fstream>

#include <gtest/gtest.h>

#include "models/opt/generate.h"
#include "tests/common/device.h"
#include "tests/common/paths.h"
#include "tests/opt/opt_test_util.h"

namespace lethe::models::test {
namespace {

class OptGreedy : public ::testing::TestWithParam<std::string> {};

TEST_P(OptGreedy, TokensMatchTransformersGenerate) {
  OptModel model = OptModel::load(fixture_dir(GetParam()), lethe::testing::test_device());
  const auto& g = reference(GetParam())["greedy"];
  Tensor ids = int_tensor(g["prompt_ids"], g["prompt_shape"]);
  Tensor mask = int_tensor(g["prompt_mask"], g["prompt_shape"]);
  GenerateOptions o;
  o.max_new_tokens = g["max_new_tokens"].get<int64_t>();
  GenerateResult r = generate(model, ids, mask, o);
  const auto want = g["new_tokens"].get<std::vector<std::vector<int64_t>>>();
  ASSERT_EQ(r.tokens.size(), want.size());
  const int64_t T = ids.size(1);
  for (size_t b = 0; b < want.size(); ++b) {
    // HF pads a finished row; lethe's per-row list stops at EOS.
    std::vector<int64_t> w;
    for (int64_t t : want[b]) {
      w.push_back(t);
      if (t == 2) break;
    }
    EXPECT_EQ(r.tokens[b], w) << "row " << b;
  }
  // The full sequences equal HF's output (prompt, new tokens, pad after EOS).
  ASSERT_EQ(r.sequences.size(1), T + static_cast<int64_t>(want[0].size()));
  const auto seq = r.sequences.to_int_vector();
  const auto prompt = g["prompt_ids"].get<std::vector<int64_t>>();
  const int64_t L = r.sequences.size(1);
  for (size_t b = 0; b < want.size(); ++b) {
    for (int64_t t = 0; t < T; ++t) EXPECT_EQ(seq[b * L + t], prompt[b * T + t]);
    for (size_t t = 0; t < want[b].size(); ++t) EXPECT_EQ(seq[b * L + T + t], want[b][t]);
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, OptGreedy, ::testing::ValuesIn(fixture_names()),
                         [](const auto& info) { return info.param; });

TEST(OptSampling, SeededAndReproducible) {
  OptModel model = OptModel::load(fixture_dir("pre_ln"), lethe::testing::test_device());
  const auto& g = reference("pre_ln")["greedy"];
  Tensor ids = int_tensor(g["prompt_ids"], g["prompt_shape"]);
  Tensor mask = int_tensor(g["prompt_mask"], g["prompt_shape"]);
  GenerateOptions o;
  o.max_new_tokens = 12;
  o.do_sample = true;
  o.temperature = 1.5;
  o.seed = 1;
  const auto a = generate(model, ids, mask, o).tokens;
  const auto b = generate(model, ids, mask, o).tokens;
  EXPECT_EQ(a, b);
  o.seed = 2;
  EXPECT_NE(generate(model, ids, mask, o).tokens, a);
  // top_k = 1 and a tiny top_p both reduce sampling to greedy (reference: HF greedy tokens).
  const auto want = g["new_tokens"].get<std::vector<std::vector<int64_t>>>();
  o.max_new_tokens = g["max_new_tokens"].get<int64_t>();
  o.top_k = 1;
  auto k1 = generate(model, ids, mask, o).tokens;
  o.top_k = 0;
  o.top_p = 1e-6;
  auto p0 = generate(model, ids, mask, o).tokens;
  for (size_t r = 0; r < want.size(); ++r) {
    std::vector<int64_t> w;
    for (int64_t t : want[r]) {
      w.push_back(t);
      if (t == 2) break;
    }
    EXPECT_EQ(k1[r], w);
    EXPECT_EQ(p0[r], w);
  }
}

TEST(OptSampling, FiltersKeepTheRightTokens) {
  // logits → probabilities 0.5, 0.25, 0.125, 0.125 (ids 0..3) after temperature 1.
  const std::vector<float> logits = {std::log(0.5f), std::log(0.25f), std::log(0.125f),
                                     std::log(0.125f)};
  GenerateOptions o;
  o.do_sample = true;
  // top_p = 0.6: HF drops the ascending prefix with cumulative mass <= 0.4 → ids 2, 3 removed.
  o.top_p = 0.6;
  for (double u : {0.0, 0.3, 0.6, 0.9, 0.999}) {
    const int64_t t = pick_next_token(logits, o, u);
    EXPECT_TRUE(t == 0 || t == 1) << u;
  }
  EXPECT_EQ(pick_next_token(logits, o, 0.1), 0);  // 0.5/0.75 of the mass is id 0
  EXPECT_EQ(pick_next_token(logits, o, 0.9), 1);
  // top_k = 2 keeps ids 0 and 1; top_k = 3 keeps the tie (ids 2 and 3 both stay, as HF).
  o.top_p = 1.0;
  o.top_k = 3;
  EXPECT_EQ(pick_next_token(logits, o, 0.999), 3);
  o.top_k = 1;
  EXPECT_EQ(pick_next_token(logits, o, 0.999), 0);
  // Unfiltered: inverse CDF in id order.
  o.top_k = 0;
  EXPECT_EQ(pick_next_token(logits, o, 0.49), 0);
  EXPECT_EQ(pick_next_token(logits, o, 0.51), 1);
  EXPECT_EQ(pick_next_token(logits, o, 0.80), 2);
  EXPECT_EQ(pick_next_token(logits, o, 0.95), 3);
}

TEST(OptGenerate, RejectsRightPaddingAndBadOptions) {
  OptModel model = OptModel::load(fixture_dir("pre_ln"));
  Tensor ids = Tensor::from_vector(std::vector<int64_t>{2, 5, 1}, {1, 3}, DType::i64);
  Tensor mask = Tensor::from_vector(std::vector<int64_t>{1, 1, 0}, {1, 3}, DType::i64);
  EXPECT_THROW(generate(model, ids, mask), Error);
  Tensor ok_mask = Tensor::ones({1, 3}, DType::i64);
  GenerateOptions o;
  o.do_sample = true;
  o.temperature = 0;
  EXPECT_THROW(generate(model, ids, ok_mask, o), Error);
  o.temperature = 1;
  o.top_p = 0;
  EXPECT_THROW(generate(model, ids, ok_mask, o), Error);
  o.top_p = 1;
  o.max_new_tokens = 0;
  EXPECT_EQ(generate(model, ids, ok_mask, o).sequences.size(1), 3);
}

}  // namespace
}  // namespace lethe::models::test

namespace lethe::models::test {
namespace {

TEST(OptSampling, DistributionMatchesTransformersWarpers) {
  std::ifstream in(lethe::testing::source_dir() + "/tests/opt/fixtures/sampling.json");
  const nlohmann::json j = nlohmann::json::parse(in);
  ASSERT_GE(j["cases"].size(), 5u);
  for (const auto& c : j["cases"]) {
    GenerateOptions o;
    o.do_sample = true;
    o.temperature = c["temperature"].get<double>();
    o.top_k = c["top_k"].get<int64_t>();
    o.top_p = c["top_p"].get<double>();
    SCOPED_TRACE("T=" + std::to_string(o.temperature) + " k=" + std::to_string(o.top_k) +
                 " p=" + std::to_string(o.top_p));
    const auto logits = c["logits"].get<std::vector<float>>();
    const auto want = c["probs"].get<std::vector<double>>();
    const auto got = sampling_distribution(logits, o);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i] == 0, want[i] == 0) << "token " << i << " kept differently";
      EXPECT_NEAR(got[i], want[i], 1e-6) << "token " << i;
    }
    // Every draw lands on a token the filters keep.
    for (double u = 0.005; u < 1; u += 0.01) EXPECT_GT(want[pick_next_token(logits, o, u)], 0);
  }
}

}  // namespace
}  // namespace lethe::models::test
