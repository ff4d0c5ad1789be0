// What lethe refuses before it starts (docs/cli.md), below the CLI: a checkpoint is validated
// field by field before it is resumed, rows with nothing to predict or more tokens than the
// model's positions are named by file and line, adapter sizes are whole numbers bounded by the
// layers, and an output over an input is a usage error.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/io/json.h"
#include "models/causal_lm.h"
#include "models/lora.h"
#include "tests/common/expect_error.h"
#include "tests/common/temp_dir.h"
#include "trainers/config.h"
#include "trainers/data/dataset.h"
#include "trainers/trainer.h"

namespace lethe::trainers {
namespace {

namespace fs = std::filesystem;
using lethe::testing::expect_error;
const std::string kDir = "tests/trainers/fixtures/methods";

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> run_sets(const std::string& out) {
  return {"model.path=" + kDir + "/model",
          "data.forget=" + kDir + "/forget.jsonl",
          "data.retain=" + kDir + "/retain.jsonl",
          "data.format=tokenized",
          "method.name=graddiff",
          "trainer.batch_size=2",
          "trainer.grad_accum=1",
          "trainer.lr=0.01",
          "trainer.max_steps=3",
          "trainer.threads=2",
          "output.dir=" + out};
}

void train(const std::vector<std::string>& sets, int64_t stop_after = 0) {
  std::ostringstream log;
  TrainerOptions o;
  o.log = &log;
  o.stop_after = stop_after;
  Trainer t(load_config("", sets, RunKind::unlearn), o);
  t.run();
}

// A fresh checkpoint after 2 of 3 steps, in a run folder of its own.
std::string checkpointed_run(const std::string& tag) {
  const std::string out = lethe::testing::scratch_dir("ckpt", tag);
  train(run_sets(out), 2);
  EXPECT_TRUE(fs::exists(out + "/checkpoint/trainer_state.json"));
  return out;
}

void edit_state(const std::string& out, const std::function<void(nlohmann::json&)>& edit) {
  const std::string p = out + "/checkpoint/trainer_state.json";
  nlohmann::json st = io::read_json_file(p);
  edit(st);
  std::ofstream(p) << st.dump();
}

void resume_fails(const std::string& out, const std::vector<std::string>& fragments,
                  const std::vector<std::string>& more = {}) {
  std::vector<std::string> sets = run_sets(out);
  sets.push_back("trainer.resume=true");
  for (const std::string& m : more) sets.push_back(m);
  expect_error([&] { train(sets); }, fragments);
  EXPECT_FALSE(fs::exists(out + "/model.safetensors")) << "a refused resume wrote a result";
}

TEST(ResumeChecks, AnUntouchedCheckpointResumes) {
  const std::string out = checkpointed_run("good");
  std::vector<std::string> sets = run_sets(out);
  sets.push_back("trainer.resume=true");
  train(sets);
  EXPECT_TRUE(fs::exists(out + "/model.safetensors"));
}

TEST(ResumeChecks, EveryStateFieldIsTypedAndInRange) {
  struct Case {
    std::string name;
    std::function<void(nlohmann::json&)> edit;
    std::vector<std::string> fragments;
  };
  const std::vector<Case> cases = {
      {"negative",
       [](nlohmann::json& s) { s["state"]["steps_done"] = -2; },
       {"trainer_state.json", "state.steps_done = -2 is outside [1, 2]"}},
      {"fraction",
       [](nlohmann::json& s) { s["state"]["steps_done"] = 1.5; },
       {"state.steps_done must be a whole number, got 1.5"}},
      {"huge",
       [](nlohmann::json& s) { s["state"]["steps_done"] = 18446744073709551615ull; },
       {"the run already did"}},
      {"short_history",
       [](nlohmann::json& s) { s["steps"].erase(1); },
       {"steps must list the 2 steps done, it has 1"}},
      {"negative_lr",
       [](nlohmann::json& s) { s["state"]["base_lr"] = -0.1; },
       {"state.base_lr must be a finite number >= 0, got -0.1"}},
      {"string_lr",
       [](nlohmann::json& s) { s["state"]["base_lr"] = "0.1"; },
       {"state.base_lr must be a finite number"}},
      {"optimizer_steps",
       [](nlohmann::json& s) { s["state"]["optimizer_steps"] = -1; },
       {"state.optimizer_steps = -1"}},
      {"best_step",
       [](nlohmann::json& s) { s["state"]["best_step"] = 7; },
       {"state.best_step = 7 is outside [-1, 2]"}},
      {"step_index",
       [](nlohmann::json& s) { s["steps"][1]["step"] = 5; },
       {"steps[1].step = 5 is outside [2, 2]"}},
      {"loss_missing",
       [](nlohmann::json& s) { s["steps"][0]["loss"].erase("retain_nll"); },
       {"steps[0].loss.retain_nll is missing"}},
      {"eval_step",
       [](nlohmann::json& s) {
         s["eval"] = {{{"step", -1}}};
       },
       {"eval[0].step = -1"}},
      {"no_state", [](nlohmann::json& s) { s.erase("state"); }, {"state is missing"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string out = checkpointed_run(c.name);
    edit_state(out, c.edit);
    resume_fails(out, c.fragments);
  }
}

TEST(ResumeChecks, NonFiniteOptimizerStateIsNamed) {
  const std::string out = checkpointed_run("nan_state");
  const std::string p = out + "/checkpoint/optimizer.safetensors";
  std::string bytes = slurp(p);
  uint64_t header = 0;
  std::memcpy(&header, bytes.data(), 8);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(&bytes[8 + header + 4 * 3], &nan, 4);  // element 3 of the first state tensor
  std::ofstream(p, std::ios::binary) << bytes;
  resume_fails(out, {"optimizer.safetensors", "non-finite value at element 3"});
}

TEST(ResumeChecks, ACheckpointOfAnotherModelOrRecipeIsRefused) {
  {
    const std::string out = checkpointed_run("other_model");
    const std::string p = out + "/checkpoint/config.json";
    nlohmann::json c = io::read_json_file(p);
    c["ffn_dim"] = 48;
    std::ofstream(p) << c.dump();
    resume_fails(out, {"checkpoint/config.json", "fc1.weight' has shape [48, 16]",
                       "model.path (" + kDir + "/model) needs"});
  }
  {
    const std::string out = checkpointed_run("other_recipe");
    resume_fails(out, {"trainer_state.json", "made with trainer.seed = \"0\", this run has 5"},
                 {"trainer.seed=5"});
  }
}

TEST(DataChecks, RowsWithNothingToPredictOrTooManyTokensNameTheirLine) {
  const std::string dir = lethe::testing::scratch_dir("rows", "x");
  const std::string one = dir + "/one.jsonl";
  std::ofstream(one) << "{\"input_ids\": [2, 5, 6]}\n{\"input_ids\": [5]}\n";
  expect_error([&] { data::load_tokenized(one, 512); },
               {"one.jsonl:2", "a row of one token has no target after the shift"});
  const std::string first = dir + "/first.jsonl";
  std::ofstream(first) << "{\"input_ids\": [2, 5, 6], \"labels\": [2, -100, -100]}\n";
  expect_error([&] { data::load_tokenized(first, 512); },
               {"first.jsonl:1", "every label after the first is -100"});
  const std::string longer = dir + "/long.jsonl";
  std::string ids = "2";
  for (int i = 0; i < 70; ++i) ids += ", 5";
  std::ofstream(longer) << "{\"input_ids\": [2, 5]}\n{\"input_ids\": [" << ids << "]}\n";
  expect_error([&] { data::load_tokenized(longer, 512, 64, 64); },
               {"long.jsonl:2", "71 tokens, more than the model's 64 positions",
                "lower data.max_length to 64"});
  EXPECT_EQ(data::load_tokenized(longer, 64, 64, 64).size(), 2u);  // truncated: within the model
  // Through the trainer: data.max_length above the tiny model's 64 positions.
  std::vector<std::string> sets = run_sets(lethe::testing::scratch_dir("rows", "out"));
  sets[1] = "data.forget=" + longer;
  sets.push_back("data.max_length=4096");
  expect_error([&] { train(sets); }, {"long.jsonl:2", "max_position_embeddings"});
}

TEST(AdapterChecks, RankIsAWholeNumberWithinTheLayers) {
  const auto model = models::load_causal_lm(kDir + "/model");
  for (const auto& [r, fragment] : std::vector<std::pair<std::string, std::string>>{
           {"4.5", "field \"r\" must be a whole number, got 4.5"},
           {"4.0", "field \"r\" must be a whole number"},
           {"0", "field \"r\" = 0 is outside [1, 2^30]"},
           {"-3", "field \"r\" = -3 is outside"},
           {"\"4\"", "field \"r\" must be a whole number"},
           {"100000000000000", "field \"r\" = 100000000000000 is outside"},
           {"1000", "r = 1000 exceeds"},
           {"17", "r = 17 exceeds"}}) {
    SCOPED_TRACE(r);
    const std::string dir = lethe::testing::scratch_dir("adapter", "r");
    fs::copy("tests/trainers/fixtures/lora/adapter", dir, fs::copy_options::recursive);
    nlohmann::json c = io::read_json_file(dir + "/adapter_config.json");
    c["r"] = nlohmann::json::parse(r);
    std::ofstream(dir + "/adapter_config.json") << c.dump();
    expect_error([&] { models::LoraAdapter::load(*model, dir, false); }, {fragment});
  }
}

TEST(OutputChecks, AnOutputOverAnInputIsAUsageError) {
  std::vector<std::string> sets = run_sets(kDir + "/model/");
  EXPECT_THROW(load_config("", sets, RunKind::unlearn), UsageError);
  expect_error([&] { load_config("", sets, RunKind::unlearn); },
               {"output.dir (" + kDir + "/model/) is model.path"});
  sets.back() = "output.dir=" + kDir + "/model/../model/sub";
  expect_error([&] { load_config("", sets, RunKind::unlearn); }, {"lies inside model.path"});
}

}  // namespace
}  // namespace lethe::trainers
