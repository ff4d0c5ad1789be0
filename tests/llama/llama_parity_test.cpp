// LlamaModel against transformers (LlamaForCausalLM, Qwen2ForCausalLM, MistralForCausalLM):
// logits, log-probs, loss and every parameter's gradient on a right- and a left-padded batch, the
// KV cache fed in chunks, and greedy generations, for every fixture
// (tools/fixtures/make_llama_fixtures.py).
#include <algorithm>
#include <cmath>
#include <iostream>

#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "models/llama/llama_model.h"
#include "tests/common/compare.h"
#include "tests/common/device.h"
#include "tests/llama/llama_test_util.h"

namespace lethe::models::test {
namespace {

constexpr double kLogitTol = 1e-4;  // absolute
constexpr double kGradTol = 1e-4;   // relative, norm-wise per parameter

class LlamaParity : public ::testing::TestWithParam<std::string> {
 protected:
  LlamaModel load() {
    LlamaLoadOptions o;
    o.warn = [this](const std::string& w) { warnings_.push_back(w); };
    return LlamaModel::load(llama_fixture_dir(GetParam()), lethe::testing::test_device(), o);
  }
  std::vector<std::string> warnings_;
};

// max |got - want| over the rows (of width V) whose mask entry is 1.
double masked_max_error(const std::vector<double>& got, const std::vector<double>& want,
                        const std::vector<int64_t>& mask, size_t V) {
  EXPECT_EQ(got.size(), want.size());
  double err = 0;
  for (size_t i = 0; i < got.size() && i < want.size(); ++i)
    if (mask[i / V]) err = lethe::testing::nan_max(err, std::abs(got[i] - want[i]));
  return err;
}

TEST_P(LlamaParity, LogitsAndLogprobsMatchTransformers) {
  LlamaModel model = load();
  EXPECT_TRUE(warnings_.empty()) << warnings_[0];
  const auto& ref = llama_reference(GetParam());
  for (const char* side : {"right", "left"}) {
    SCOPED_TRACE(side);
    const auto& b = ref[side];
    const Tensor ids = ids_tensor(b["ids"], b["shape"]);
    const Tensor mask = ids_tensor(b["mask"], b["shape"]);
    Tensor logits;
    {
      NoGradGuard ng;
      logits = model.forward(ids, mask);
    }
    ASSERT_EQ(logits.shape(), b["logits_shape"].get<std::vector<int64_t>>());
    const double err = masked_max_error(
        logits.to_double_vector(), b["logits"].get<std::vector<double>>(),
        b["mask"].get<std::vector<int64_t>>(), static_cast<size_t>(logits.size(2)));
    EXPECT_LT(err, kLogitTol);
    const auto lp = model.token_logprobs(ids, mask).to_double_vector();
    const auto lp_want = b["logprobs"].get<std::vector<double>>();
    ASSERT_EQ(lp.size(), lp_want.size());
    double lp_err = 0;
    for (size_t i = 0; i < lp.size(); ++i)
      lp_err = lethe::testing::nan_max(lp_err, std::abs(lp[i] - lp_want[i]));
    EXPECT_LT(lp_err, kLogitTol);
    std::cout << "[llama parity] " << GetParam() << " " << side << ": max |logits err| " << err
              << ", max |logprob err| " << lp_err << "\n";
  }
}

TEST_P(LlamaParity, LossAndGradientsMatchTransformers) {
  LlamaModel model = load();
  const auto& ref = llama_reference(GetParam());
  for (const char* side : {"right", "left"}) {
    SCOPED_TRACE(side);
    const auto& b = ref[side];
    const Tensor ids = ids_tensor(b["ids"], b["shape"]);
    const Tensor mask = ids_tensor(b["mask"], b["shape"]);
    const Tensor labels = ids_tensor(b["labels"], b["shape"]);
    {  // default labels = the fixture's recipe (-100 on padding and each row's first token)
      NoGradGuard ng;
      EXPECT_LT(std::abs(model.loss(ids, mask).item() - b["loss"].get<double>()), kLogitTol);
    }
    model.parameters().zero_grads(0);
    Tensor loss = model.loss(ids, mask, labels);
    const double loss_err = std::abs(loss.item() - b["loss"].get<double>());
    EXPECT_LT(loss_err, kLogitTol);
    loss.backward();
    double worst = 0;
    std::string worst_name;
    size_t n = 0;
    for (const auto& [name, g] : b["grads"].items()) {
      SCOPED_TRACE(name);
      ASSERT_TRUE(model.parameters().contains(name));
      const Tensor grad = model.parameters().grad_view(0, name);
      ASSERT_EQ(grad.shape(), g["shape"].get<std::vector<int64_t>>());
      const auto got = grad.to_double_vector();
      const auto want = g["values"].get<std::vector<double>>();
      double diff = 0, norm = 0;
      for (size_t i = 0; i < got.size(); ++i) {
        diff += (got[i] - want[i]) * (got[i] - want[i]);
        norm += want[i] * want[i];
      }
      ++n;
      // (Unlike OPT's, k_proj's bias has a real gradient: RoPE rotates it with the key's
      // position, so q·R(p)b_k differs between the keys of a row and softmax does not cancel it.)
      const double rel = std::sqrt(diff) / std::max(std::sqrt(norm), 1e-12);
      EXPECT_GT(std::sqrt(norm), 0.0) << "a reference gradient is exactly zero";
      EXPECT_LT(rel, kGradTol) << "|g - g_ref| = " << std::sqrt(diff)
                               << ", |g_ref| = " << std::sqrt(norm);
      if (!(rel <= worst) && !std::isnan(worst)) worst_name = name;
      worst = lethe::testing::nan_max(worst, rel);
    }
    EXPECT_EQ(n, model.parameters().names().size());
    std::cout << "[llama parity] " << GetParam() << " " << side << ": |loss err| " << loss_err
              << ", worst relative gradient error " << worst << " (" << worst_name << ", " << n
              << " parameters)\n";
  }
}

// Feeding a batch in three chunks through the KV cache gives transformers' full-sequence logits
// (the cache positions continue where the last chunk stopped).
TEST_P(LlamaParity, KvCacheChunksMatchTransformers) {
  LlamaModel model = load();
  const auto& ref = llama_reference(GetParam());
  NoGradGuard ng;
  for (const char* side : {"right", "left"}) {
    SCOPED_TRACE(side);
    const auto& b = ref[side];
    const Tensor ids = ids_tensor(b["ids"], b["shape"]);
    const Tensor mask = ids_tensor(b["mask"], b["shape"]);
    const int64_t T = ids.size(1);
    KvCache cache;
    LlamaForwardOptions o;
    o.cache = &cache;
    std::vector<Tensor> parts;
    for (auto [s, e] : {std::pair<int64_t, int64_t>{0, T - 3}, {T - 3, T - 1}, {T - 1, T}}) {
      parts.push_back(
          model.forward(ids.slice(1, s, e).contiguous(), mask.slice(1, 0, e).contiguous(), o));
      EXPECT_EQ(cache.length(), e);
    }
    const double err = masked_max_error(
        concat(parts, 1).to_double_vector(), b["logits"].get<std::vector<double>>(),
        b["mask"].get<std::vector<int64_t>>(), static_cast<size_t>(model.config().vocab_size));
    EXPECT_LT(err, kLogitTol);
  }
}

// Greedy decoding through the KV cache gives transformers' generate() tokens, stopping on any of
// the config's EOS ids and padding finished rows as HF does.
TEST_P(LlamaParity, GreedyTokensMatchTransformersGenerate) {
  LlamaModel model = load();
  const auto& g = llama_reference(GetParam())["greedy"];
  const Tensor ids = ids_tensor(g["prompt_ids"], g["prompt_shape"]);
  const Tensor mask = ids_tensor(g["prompt_mask"], g["prompt_shape"]);
  GenerateOptions o;
  o.max_new_tokens = g["max_new_tokens"].get<int64_t>();
  // The fixture passed generate() pad_token_id = the config's, else 0 (transformers' own default
  // without one is the first EOS id, as lethe's).
  o.pad_token_id = model.config().pad_token_id.value_or(0);
  const GenerateResult r = model.generate(ids, mask, o);
  const auto want = g["new_tokens"].get<std::vector<std::vector<int64_t>>>();
  const std::vector<int64_t>& eos = model.config().eos_token_ids;
  ASSERT_EQ(r.tokens.size(), want.size());
  const int64_t T = ids.size(1);
  for (size_t b = 0; b < want.size(); ++b) {
    std::vector<int64_t> w;  // HF pads a finished row; lethe's per-row list stops at EOS
    for (int64_t t : want[b]) {
      w.push_back(t);
      if (std::find(eos.begin(), eos.end(), t) != eos.end()) break;
    }
    EXPECT_EQ(r.tokens[b], w) << "row " << b;
  }
  // If every row stopped early, HF's output is shorter; otherwise prompt + max_new_tokens.
  ASSERT_EQ(r.sequences.size(1), T + static_cast<int64_t>(want[0].size()));
  const auto seq = r.sequences.to_int_vector();
  const int64_t L = r.sequences.size(1);
  for (size_t b = 0; b < want.size(); ++b)
    for (size_t t = 0; t < want[b].size(); ++t)
      EXPECT_EQ(seq[b * L + T + static_cast<int64_t>(t)], want[b][t]) << "row " << b;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, LlamaParity, ::testing::ValuesIn(llama_fixture_names()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace lethe::models::test
