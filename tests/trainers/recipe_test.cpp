// Every recipe under recipes/ runs end to end: loaded as written, then run on a tiny random OPT
// with a real byte-level BPE tokenizer (the Llama recipes on a tiny random Llama with a Llama-3
// style tokenizer), with the model, the data files (small ones in the recipe's
// formats), the step count, batch, rate and output.dir overridden, and its method's objective
// must fall over two steps on one batch (seen failing, all 29, with the update direction reversed).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/io/json.h"
#include "models/llama/llama_model.h"
#include "models/opt/opt_model.h"
#include "models/tokenizer/tokenizer.h"
#include "tests/common/paths.h"
#include "tests/common/temp_dir.h"
#include "trainers/classifier.h"
#include "trainers/config.h"
#include "trainers/trainer.h"

namespace lethe::trainers {
namespace {

namespace fs = std::filesystem;

// A tiny random OPT whose vocabulary covers the BPE fixture tokenizer, saved with its files.
const std::string& tiny_model_dir() {
  static const std::string dir = [] {
    const std::string d = lethe::testing::scratch_dir("recipe", "model");
    models::OptConfig c;
    c.vocab_size = 1504;
    c.hidden_size = 16;
    c.word_embed_proj_dim = 16;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 2;
    c.ffn_dim = 32;
    c.dropout = 0;  // step 2 sees step 1's batch through the same network
    c.max_position_embeddings = 512;
    models::OptModel m(c);
    {
      NoGradGuard ng;
      Tensor w = m.parameters().flat_weights();
      w.copy_(Tensor::randn(w.shape(), /*seed=*/11, 0.0, 0.2));
    }
    m.save(d);
    for (const char* f :
         {"vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"})
      fs::copy_file(lethe::testing::source_dir() + "/tests/tokenizer/fixtures/bpe/" + f,
                    fs::path(d) / f);
    return d;
  }();
  return dir;
}

// A tiny random Llama (grouped-query attention) with the Llama-3 style tokenizer fixture, for the
// Llama recipes (recipes/tofu_llama/): their chat template's special tokens are that tokenizer's.
const std::string& tiny_llama_dir() {
  static const std::string dir = [] {
    const std::string d = lethe::testing::scratch_dir("recipe", "llama");
    const std::string tok_dir = lethe::testing::source_dir() + "/tests/tokenizer/fixtures/llama3";
    const auto tok = tokenizer::load_tokenizer(tok_dir);
    models::LlamaConfig c;
    c.vocab_size = tok->vocab_size();
    c.hidden_size = 16;
    c.intermediate_size = 32;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 2;
    c.num_key_value_heads = 1;
    c.head_dim = 8;
    c.max_position_embeddings = 512;
    c.bos_token_id = tok->bos_id();
    c.eos_token_id = tok->eos_id();
    c.eos_token_ids = {tok->eos_id()};
    models::LlamaModel m(c);
    {
      NoGradGuard ng;
      Tensor w = m.parameters().flat_weights();
      w.copy_(Tensor::randn(w.shape(), /*seed=*/11, 0.0, 0.2));
    }
    m.save(d);
    for (const auto& e : fs::directory_iterator(tok_dir))
      fs::copy_file(e.path(), fs::path(d) / e.path().filename());
    return d;
  }();
  return dir;
}

std::string data_file(const std::string& format, bool forget) {
  const std::string f = "tests/trainers/fixtures/data/";
  if (format == "tofu") return forget ? "data/tofu/forget01.json" : f + "tofu_forget01_head.json";
  if (format == "pku") return f + "pku_saferlhf.jsonl";
  if (format == "truthfulqa") return f + "truthfulqa_head.csv";
  if (format == "muse") return f + "muse_raw.jsonl";
  if (format == "jsonl") return f + "prompt_completion.jsonl";
  return f + "tokenized.jsonl";
}

// A copy of the file's first record (a CSV keeps its header) in a scratch directory: a retain set
// of one sample pairs the same retain row with every forget row at every step.
std::string first_record(const std::string& path) {
  std::ifstream in(lethe::testing::source_dir() + "/" + path);
  std::string line, text;
  const bool csv = fs::path(path).extension() == ".csv";
  for (int i = 0; i < (csv ? 2 : 1) && std::getline(in, line); ++i) text += line + "\n";
  const fs::path out =
      fs::path(lethe::testing::scratch_dir("recipe", "retain1")) / fs::path(path).filename();
  std::ofstream(out) << text;
  return out.string();
}

std::string own_muse_text() {
  const fs::path out =
      fs::path(lethe::testing::scratch_dir("recipe", "muse_retain")) / "retain.jsonl";
  std::ofstream(out) << R"({"text": "The museum's winter exhibition shows maps of the river )"
                     << R"(delta drawn by surveyors in the last century."})"
                     << "\n";
  return out.string();
}

// Every recipe but the eval ones (run below), the classifier (run below) and the bases in
// recipes/base/ (partial recipes, read through the recipes naming them).
std::vector<std::string> recipes() {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(lethe::testing::source_dir() + "/recipes"))
    if (e.path().extension() == ".yaml" && e.path().parent_path().filename() != "eval" &&
        e.path().parent_path().filename() != "base" &&
        e.path().filename().string().find("classifier") == std::string::npos)
      out.push_back(fs::relative(e.path(), lethe::testing::source_dir()).string());
  std::sort(out.begin(), out.end());
  return out;
}

class Recipe : public ::testing::TestWithParam<std::string> {};

TEST_P(Recipe, RunsOnATinyModelAndItsObjectiveFalls) {
  const std::string path = GetParam();
  const bool finetune = fs::path(path).filename().string().rfind("finetune", 0) == 0;
  const RunKind kind = finetune ? RunKind::finetune : RunKind::unlearn;
  // The recipe as written must load (only model.path is missing on this machine, and the data).
  const Config as_written = load_config(path, {}, kind);
  const std::string fmt = as_written.str("data.format");
  const std::string ff = as_written.str_or("data.forget_format", fmt);
  const std::string rf = as_written.str_or("data.retain_format", fmt);
  const std::string out = lethe::testing::scratch_dir("recipe", "run");
  // The recipes' rates (1e-5 after warm-up) barely move a tiny random model: the rate is raised
  // and the warm-up dropped, and two steps see the same batch — the whole forget (or training)
  // file in one batch, paired with a one-sample retain file — so the second step's losses are the
  // first step's batch at the updated weights. The method's combined objective Σ wₖ·Lₖ (its own
  // weights at step 1: recipe weights, MGDA λ, NGDiff's 1/‖g‖) must have fallen.
  const bool llama = path.find("/tofu_llama/") != std::string::npos;
  std::vector<std::string> sets = {"model.path=" + (llama ? tiny_llama_dir() : tiny_model_dir()),
                                   "trainer.max_steps=2",
                                   "trainer.batch_size=64",
                                   "trainer.grad_accum=1",
                                   "trainer.lr=1e-3",
                                   "trainer.warmup_steps=0",
                                   "trainer.scheduler=constant",
                                   "data.shuffle=false",
                                   "data.pairing=sequential",
                                   "data.max_length=384",
                                   "trainer.threads=2",
                                   "output.dir=" + out};
  if (finetune) {
    sets.push_back("data.train=" + data_file(fmt, true));
  } else {
    sets.push_back("data.forget=" + data_file(ff, true));
    // MUSE's forget and retain fixtures are one file: a retain row inside the forget batch makes
    // GradDiff's −nll(F) + nll(R) cancel to second order. Its retain row is a text of its own.
    sets.push_back("data.retain=" +
                   (rf == "muse" ? own_muse_text() : first_record(data_file(rf, false))));
  }
  std::ostringstream log;
  TrainerOptions o;
  o.log = &log;
  Trainer t(load_config(path, sets, kind), o);
  EXPECT_EQ(t.run(), 2);
  ASSERT_EQ(t.steps().size(), 2u);
  for (const StepRecord& r : t.steps())
    for (double l : r.losses) EXPECT_TRUE(std::isfinite(l)) << path;
  EXPECT_GT(t.steps()[0].direction_norm, 0) << path;
  const StepRecord &s1 = t.steps()[0], &s2 = t.steps()[1];
  ASSERT_EQ(s1.losses.size(), s2.losses.size());
  double before = 0, after = 0;
  for (size_t k = 0; k < s1.losses.size(); ++k) {
    before += s1.weights[k] * s1.losses[k];
    after += s1.weights[k] * s2.losses[k];
  }
  EXPECT_LT(after, before - 1e-6 * std::fabs(before))
      << path << ": the method's objective did not fall (" << before << " -> " << after << ")";
  EXPECT_TRUE(fs::exists(out + "/model.safetensors"));
  EXPECT_TRUE(fs::exists(out + (llama ? "/tokenizer.json" : "/vocab.json")))
      << "tokenizer files were not copied";
  const nlohmann::json run = io::read_json_file(out + "/run.json");
  EXPECT_EQ(run.at("recipe"), path);
}

INSTANTIATE_TEST_SUITE_P(All, Recipe, ::testing::ValuesIn(recipes()), [](const auto& info) {
  std::string n = info.param.substr(8);  // drop "recipes/"
  for (char& c : n)
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  return n;
});

// The recipes the issue promises: TOFU forget01/05/10 × every method, the fine-tuning recipes,
// PKU-SafeRLHF with Yao et al.'s defaults, MUSE-News GA/GradDiff/NPO.
TEST(Recipes, TheSetIsComplete) {
  const std::vector<std::string> all = recipes();
  const std::set<std::string> have(all.begin(), all.end());
  for (const char* split : {"forget01", "forget05", "forget10"})
    for (const char* m : {"ga", "graddiff", "ga_mismatch_kl", "npo", "simnpo", "mollm", "ngdiff"})
      EXPECT_TRUE(have.count(std::string("recipes/tofu/") + split + "_" + m + ".yaml"))
          << split << " " << m;
  EXPECT_TRUE(have.count("recipes/tofu/finetune_full.yaml"));
  // Llama-3.2-1B-Instruct: fine-tuning (full, retain90) and forget10 with every method.
  for (const char* m : {"ga", "graddiff", "ga_mismatch_kl", "npo", "simnpo", "mollm", "ngdiff"})
    EXPECT_TRUE(have.count(std::string("recipes/tofu_llama/forget10_") + m + ".yaml")) << m;
  EXPECT_TRUE(have.count("recipes/tofu_llama/finetune_full.yaml"));
  EXPECT_TRUE(have.count("recipes/tofu_llama/finetune_retain90.yaml"));
  EXPECT_TRUE(have.count("recipes/pku/ga_mismatch_kl_opt1.3b.yaml"));
  for (const char* m : {"ga", "graddiff", "npo"})
    EXPECT_TRUE(have.count(std::string("recipes/muse/news_") + m + ".yaml")) << m;
}

// A rewritten recipe resolves, through recipes/base/tofu_unlearn.yaml and open_unlearning.yaml,
// to the values it held when it was written out in full (open-unlearning's TOFU NPO recipe);
// NGDiff's recipe overrides the base's clipping.
TEST(Recipes, TofuRecipesResolveThroughTheirBases) {
  const Config npo = load_config("recipes/tofu/forget10_npo.yaml", {}, RunKind::unlearn);
  const std::map<std::string, std::string> expected = {
      {"model.path", "saves/finetune/tofu_full"},
      {"model.device", "cpu"},
      {"model.dtype", "f32"},
      {"method.name", "npo"},
      {"method.beta", "0.1"},
      {"method.gamma", "1.0"},
      {"method.alpha", "1.0"},
      {"method.retain_loss", "nll"},
      {"data.format", "tofu"},
      {"data.forget", "data/tofu/forget10.json"},
      {"data.retain", "data/tofu/retain90.json"},
      {"data.max_length", "512"},
      {"data.pairing", "random"},
      {"data.shuffle", "true"},
      {"trainer.optimizer", "adamw"},
      {"trainer.lr", "1.0e-5"},
      {"trainer.weight_decay", "0.01"},
      {"trainer.batch_size", "4"},
      {"trainer.grad_accum", "8"},
      {"trainer.epochs", "10"},
      {"trainer.warmup_epochs", "1"},
      {"trainer.scheduler", "linear"},
      {"trainer.max_grad_norm", "1.0"},
      {"trainer.seed", "0"},
      {"output.dir", "saves/unlearn/tofu_forget10_npo"}};
  for (const auto& [k, v] : expected) EXPECT_EQ(npo.str(k), v) << k;
  EXPECT_FALSE(npo.has("method.delta"));
  const Config ngdiff = load_config("recipes/tofu/forget10_ngdiff.yaml", {}, RunKind::unlearn);
  EXPECT_EQ(ngdiff.str("trainer.max_grad_norm"), "0");
  EXPECT_EQ(ngdiff.str("trainer.lr"), "1.0e-5");
  const Config full = load_config("recipes/tofu/finetune_full.yaml", {}, RunKind::finetune);
  EXPECT_EQ(full.str("model.path"), "facebook/opt-1.3b");
  EXPECT_EQ(full.str("trainer.epochs"), "5");
  EXPECT_EQ(full.str("data.train"), "data/tofu/full.json");
}

// The Llama recipes are the OPT ones in the Llama-3 instruct format: the same open-unlearning
// settings and method keys, the chat template and joint tokenization, their own paths.
TEST(Recipes, LlamaTofuRecipesDifferFromOptOnlyInModelFormatAndPaths) {
  for (const char* m : {"ga", "graddiff", "ga_mismatch_kl", "npo", "simnpo", "mollm", "ngdiff"}) {
    SCOPED_TRACE(m);
    const Config opt =
        load_config(std::string("recipes/tofu/forget10_") + m + ".yaml", {}, RunKind::unlearn);
    const Config llama = load_config(std::string("recipes/tofu_llama/forget10_") + m + ".yaml", {},
                                     RunKind::unlearn);
    EXPECT_EQ(llama.str("data.template"), "llama3_chat");
    EXPECT_EQ(llama.str("data.tokenization"), "joint");
    EXPECT_EQ(llama.str("model.path"), "saves/finetune/tofu_llama_full");
    EXPECT_EQ(llama.str("output.dir"), std::string("saves/unlearn/tofu_llama_forget10_") + m);
    for (const auto& [k, v] : opt.values()) {
      if (k == "model.path" || k == "output.dir" || k == "data.template" ||
          k == "data.tokenization")
        continue;
      EXPECT_EQ(llama.str(k), opt.str(k)) << k;
    }
  }
  const Config full = load_config("recipes/tofu_llama/finetune_full.yaml", {}, RunKind::finetune);
  EXPECT_EQ(full.str("model.path"), "models/Llama-3.2-1B-Instruct");
  EXPECT_EQ(full.str("data.template"), "llama3_chat");
  EXPECT_EQ(full.str("trainer.epochs"), "5");
}

// recipes/pku/finetune_classifier_harmful.yaml trains a classifier for one step.
TEST(ClassifierRecipe, TrainsOneStep) {
  const std::string path = "recipes/pku/finetune_classifier_harmful.yaml";
  ASSERT_EQ(load_config(path, {}, RunKind::finetune).str("model.head"), "classifier");
  const std::string out = lethe::testing::scratch_dir("recipe", "classifier");
  const Config c =
      load_config(path,
                  {"model.path=" + tiny_model_dir(), "data.train=" + data_file("pku", true),
                   "trainer.max_steps=1", "trainer.batch_size=2", "trainer.grad_accum=1",
                   "trainer.warmup_steps=0", "output.dir=" + out},
                  RunKind::finetune);
  std::ostringstream log;
  const ClassifierRun run = train_classifier(c, log, false);
  EXPECT_EQ(run.steps, 1);
  EXPECT_TRUE(std::isfinite(run.losses.at(0)));
  EXPECT_TRUE(fs::exists(out + "/model.safetensors"));
  EXPECT_TRUE(fs::exists(out + "/vocab.json"));
}

}  // namespace
}  // namespace lethe::trainers
