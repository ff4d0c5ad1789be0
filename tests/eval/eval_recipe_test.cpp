// The eval recipes (recipes/eval/*.yaml) through `lethe eval`'s runner: each loads as written and
// runs on the fixture models, every file it names replaced by a small fixture of the same kind.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "eval/runner.h"
#include "tests/common/paths.h"
#include "tests/common/temp_dir.h"
#include "trainers/config.h"

namespace lethe::eval {
namespace {

namespace fs = std::filesystem;

// recipes/eval/*.yaml: each loads as written for lethe eval and runs on the tiny fixture models,
// every file it names replaced by a small fixture of the same kind; every part it asks for is in
// the report.
std::string eval_stand_in(const std::string& key) {
  const std::string t = lethe::testing::source_dir() + "/tests/trainers/fixtures/tofu_eval/";
  const std::string x = lethe::testing::source_dir() + "/tests/trainers/fixtures/eval_extra/";
  if (key == "eval.forget") return t + "forget.json";
  if (key == "eval.retain") return t + "retain.json";
  if (key == "eval.real_authors") return t + "real_authors.json";
  if (key == "eval.world_facts") return t + "world_facts.json";
  if (key == "eval.retain_reference" || key == "eval.mia.reference" || key == "eval.harmful.before")
    return t + "reference_model";
  if (key == "eval.mia.forget" || key == "eval.muse.privleak_forget")
    return x + "muse_privleak_forget.json";
  if (key == "eval.mia.holdout" || key == "eval.muse.privleak_holdout")
    return x + "muse_privleak_holdout.json";
  if (key == "eval.muse.verbmem") return x + "muse_verbmem.json";
  if (key == "eval.muse.knowmem_forget" || key == "eval.muse.knowmem_retain")
    return x + "muse_knowmem.json";
  if (key == "eval.muse.knowmem_forget_icl" || key == "eval.muse.knowmem_retain_icl")
    return x + "muse_knowmem_icl.json";
  if (key == "eval.harmful.classifier") return x + "classifier";
  if (key == "eval.harmful.prompts") return t + "forget.json";  // objects with "question"
  if (key == "eval.perplexity")
    return lethe::testing::source_dir() + "/data/truthfulqa/TruthfulQA.csv";
  return "";
}

TEST(EvalRecipes, EachRunsOnTheFixtures) {
  int ran = 0;
  for (const auto& e : fs::directory_iterator(lethe::testing::source_dir() + "/recipes/eval")) {
    const std::string path = fs::relative(e.path(), lethe::testing::source_dir()).string();
    SCOPED_TRACE(path);
    const trainers::Config as_written = trainers::load_config(path, {}, trainers::RunKind::eval);
    std::vector<std::string> sets = {
        "model.path=" + lethe::testing::source_dir() + "/tests/trainers/fixtures/tofu_eval/model",
        "output.dir=" + lethe::testing::scratch_dir("recipe", "eval"),
        "eval.max_new_tokens=4",
        "eval.muse.verbmem_max_new_tokens=4",
        "eval.muse.knowmem_max_new_tokens=4",
        "eval.harmful.max_new_tokens=4",
        "eval.max_samples=3",
        "data.max_length=256"};
    for (const auto& [key, value] : as_written.values()) {
      const std::string stand_in = eval_stand_in(key);
      if (!stand_in.empty()) sets.push_back(key + "=" + stand_in);
    }
    const EvalReport rep = run_eval(trainers::load_config(path, sets, trainers::RunKind::eval));
    EXPECT_EQ(!rep.tofu.splits.empty(), as_written.has("eval.forget"));
    EXPECT_EQ(rep.mia.has_value(), as_written.has("eval.mia.forget"));
    EXPECT_EQ(rep.muse.has_value(), as_written.has("eval.muse.verbmem"));
    EXPECT_EQ(rep.harmful.has_value(), as_written.has("eval.harmful.prompts"));
    if (rep.harmful) {
      EXPECT_TRUE(rep.harmful->before.has_value());
    }
    EXPECT_EQ(rep.perplexity.has_value(), as_written.has("eval.perplexity"));
    ++ran;
  }
  EXPECT_EQ(ran, 4);
}

}  // namespace
}  // namespace lethe::eval
