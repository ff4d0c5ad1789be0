// `lethe eval` of a model with a LoRA adapter attached (model.adapter): the numbers of the merged
// model. On the CUDA test device too (tests/eval/CMakeLists.txt).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "eval/runner.h"
#include "models/causal_lm.h"
#include "models/lora.h"
#include "tests/common/device.h"
#include "tests/common/temp_dir.h"
#include "trainers/config.h"

namespace lethe::eval {
namespace {

// lethe eval with model.adapter (attached, not merged) gives the numbers of the merged model, and
// not the base model's.
TEST(Lora, EvalWithAnAdapterEqualsTheMergedModel) {
  const std::string tofu = "tests/trainers/fixtures/tofu_eval/model";
  const std::string x = "tests/trainers/fixtures/eval_extra/";
  auto base = models::load_causal_lm(tofu, Device::cpu(), {models::none_trainable});
  models::LoraConfig lc;
  lc.r = 2;
  lc.alpha = 4;
  lc.targets = {"q_proj", "fc2"};
  lc.base_model = tofu;
  models::LoraAdapter adapter(*base, lc, 3, false);
  {
    NoGradGuard ng;
    for (const std::string& n : adapter.parameters().names())
      if (n.find("lora_B") != std::string::npos)
        adapter.parameters().get(n).copy_(
            Tensor::randn(adapter.parameters().get(n).shape(), 5, 0.0, 0.5));
  }
  const std::string dir = lethe::testing::scratch_dir("lora", "eval_adapter");
  adapter.save(dir + "/adapter");
  adapter.merge_into(*base);
  base->save(dir + "/merged");
  for (const char* f :
       {"vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"})
    std::filesystem::copy_file(tofu + "/" + f, dir + "/merged/" + f);
  auto eval_ppl = [&](const std::string& model, const std::string& adapter_dir,
                      const std::string& tag) {
    std::vector<std::string> sets = {"model.path=" + model,
                                     "eval.perplexity=" + x + "mia_forget.json",
                                     "output.dir=" + dir + "/" + tag};
    for (const std::string& e : lethe::testing::test_device_sets()) sets.push_back(e);
    if (!adapter_dir.empty()) sets.push_back("model.adapter=" + adapter_dir);
    const EvalReport r = run_eval(trainers::load_config("", sets, trainers::RunKind::eval));
    return r.perplexity->result.perplexity;
  };
  const double attached = eval_ppl(tofu, dir + "/adapter", "attached");
  const double merged = eval_ppl(dir + "/merged", "", "eval_merged");
  const double plain = eval_ppl(tofu, "", "plain");
  EXPECT_NEAR(attached, merged, 1e-5 * merged);
  EXPECT_GT(std::fabs(attached - plain), 1e-3 * plain) << "the adapter changed nothing";
}

}  // namespace
}  // namespace lethe::eval
