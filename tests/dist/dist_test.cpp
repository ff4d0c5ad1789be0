// Data parallel on CPU under `mpirun --oversubscribe -np 2` (docs/distributed.md): the
// collectives; for GA, GradDiff, NPO, MOLLM and NGDiff, 5 steps on 2 ranks × batch 2 equal 5 steps
// on 1 rank × batch 4 (SGD, f32, every update within 1e-5 of the largest), also with gradient
// accumulation; ZeRO-1 equals the unsharded optimizer (AdamW); a rank with a corrupt data file or a
// different recipe makes both ranks exit non-zero within seconds.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/io/safetensors.h"
#include "engine/tensor.h"
#include "tests/common/compare.h"
#include "tests/common/temp_dir.h"

namespace lethe::testing {
const std::string& cli_binary();
const std::string& collectives_binary();
}  // namespace lethe::testing

namespace {

namespace fs = std::filesystem;
const std::string kModel = "tests/trainers/fixtures/methods/model";
const std::string kForget = "tests/trainers/fixtures/methods/forget.jsonl";
const std::string kRetain = "tests/trainers/fixtures/methods/retain.jsonl";

struct Shell {
  int status = -1;
  std::string output;
  double seconds = 0;
};

// Runs a shell command (stdout + stderr captured), at most `limit` seconds.
Shell shell(const std::string& cmd, int limit = 180) {
  const fs::path log = fs::path(lethe::testing::scratch_dir("dist", "log")) / "out.txt";
  const std::string full = "OMP_NUM_THREADS=1 timeout " + std::to_string(limit) + " " + cmd +
                           " > " + log.string() + " 2>&1";
  const auto t0 = std::chrono::steady_clock::now();
  const int rc = std::system(full.c_str());
  Shell r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  std::ifstream f(log);
  r.output.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  return r;
}

std::string mpirun_prefix() {
  std::string p = "mpirun --oversubscribe";
  if (geteuid() == 0) p += " --allow-run-as-root";
  return p;
}

std::string sets(const std::vector<std::string>& kv) {
  std::string out;
  for (const std::string& s : kv) out += " --set '" + s + "'";
  return out;
}

std::vector<std::string> base_keys(const std::string& method, const std::string& out) {
  std::vector<std::string> k = {
      "model.path=" + kModel,   "data.format=tokenized",      "data.forget=" + kForget,
      "data.retain=" + kRetain, "method.name=" + method,      "trainer.optimizer=sgd",
      "trainer.lr=0.05",        "trainer.scheduler=constant", "trainer.max_grad_norm=0",
      "trainer.weight_decay=0", "trainer.max_steps=5",        "trainer.threads=1",
      "output.dir=" + out};
  if (method == "graddiff" || method == "npo") k.push_back("data.pairing=random");
  // MOLLM against a reference model other than the starting one, so its KL term has a gradient
  // from the first step (no degenerate MGDA start).
  if (method == "mollm")
    k.push_back("model.reference=tests/trainers/fixtures/methods/reference_model");
  return k;
}

std::map<std::string, std::vector<double>> tensors(const std::string& path) {
  std::map<std::string, std::vector<double>> out;
  const lethe::io::SafetensorsFile f = lethe::io::SafetensorsFile::open(path);
  for (const lethe::io::TensorInfo& t : f.tensors())
    out[t.name] =
        lethe::Tensor::from_borrowed(const_cast<void*>(t.data), t.shape, t.dtype, f.keepalive())
            .to_double_vector();
  return out;
}

// max |Δa − Δb| / max |Δb| over every weight (Δ = the run's change from the starting model).
// `base`: the starting model (its tensors are the ones compared).
double relative_update_error(const std::string& a, const std::string& b, double* max_update,
                             const std::string& base = kModel) {
  const auto w0 = tensors(base + "/model.safetensors");
  const auto wa = tensors(a + "/model.safetensors"), wb = tensors(b + "/model.safetensors");
  double worst = 0, biggest = 0;
  for (const auto& [name, v0] : w0) {
    const auto& va = wa.at(name);
    const auto& vb = wb.at(name);
    if (va.size() != v0.size() || vb.size() != v0.size()) return INFINITY;  // a missing tensor
    for (size_t i = 0; i < v0.size(); ++i) {
      worst = lethe::testing::nan_max(worst, std::fabs(va[i] - vb[i]));
      biggest = lethe::testing::nan_max(biggest, std::fabs(vb[i] - v0[i]));
    }
  }
  if (max_update) *max_update = biggest;
  return biggest > 0 ? worst / biggest : INFINITY;  // NaN stays NaN: fails every <= check
}

TEST(Dist, CollectivesOnTwoRanks) {
  const Shell r = shell(mpirun_prefix() + " -np 2 " + lethe::testing::collectives_binary());
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("rank 0 of 2: ok"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("rank 1 of 2: ok"), std::string::npos) << r.output;
}

// `n` ranks × `per_rank` samples equal one process with n·per_rank: every weight's update within
// 1e-5 of the largest; rank 0 alone wrote run.json, which names the ranks and the communicator.
void expect_ranks_equal_one_process(const std::string& m, int n, int per_rank,
                                    const std::vector<std::string>& extra, const std::string& tag,
                                    const std::string& communicator) {
  SCOPED_TRACE(m + " on " + std::to_string(n) + " ranks (" + tag + ")");
  const std::string one = lethe::testing::scratch_dir("dist_one_" + tag, m + std::to_string(n));
  const std::string many = lethe::testing::scratch_dir("dist_many_" + tag, m + std::to_string(n));
  std::vector<std::string> k1 = base_keys(m, one), kn = base_keys(m, many);
  for (std::vector<std::string>* k : {&k1, &kn}) {
    k->insert(k->end(), extra.begin(), extra.end());
    k->push_back("trainer.grad_accum=1");
  }
  k1.push_back("trainer.batch_size=" + std::to_string(n * per_rank));
  kn.push_back("trainer.batch_size=" + std::to_string(per_rank));
  const Shell a = shell(lethe::testing::cli_binary() + " unlearn" + sets(k1));
  ASSERT_EQ(a.status, 0) << a.output;
  const Shell b = shell(mpirun_prefix() + " -np " + std::to_string(n) + " " +
                        lethe::testing::cli_binary() + " unlearn" + sets(kn));
  ASSERT_EQ(b.status, 0) << b.output;
  double biggest = 0;
  const double err = relative_update_error(many, one, &biggest);
  EXPECT_GT(biggest, 1e-4) << "the runs barely moved";
  EXPECT_LE(err, 1e-5) << "max update " << biggest;
  std::ifstream run(many + "/run.json");
  const std::string text((std::istreambuf_iterator<char>(run)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("\"ranks\": " + std::to_string(n)), std::string::npos);
  EXPECT_NE(text.find("\"communicator\": \"" + communicator + "\""), std::string::npos)
      << "the gradients did not go through " << communicator;
}

class DataParallel : public ::testing::TestWithParam<std::string> {};

// N ranks × 2 samples = 1 rank × 2N samples, for N = 2 and 3.
TEST_P(DataParallel, RanksEqualOneRankWithTheWholeBatch) {
  for (int n : {2, 3}) expect_ranks_equal_one_process(GetParam(), n, 2, {}, "cpu", "mpi");
}

// 3 ranks × 4 samples over a 6-sample forget set: slices of 4, 2 and 0 samples (rank 2 holds an
// empty slice on every step) = one process with a batch of 12 (all 6).
TEST_P(DataParallel, UnevenSlicesAndAnEmptyOneEqualOneProcess) {
  expect_ranks_equal_one_process(GetParam(), 3, 4, {}, "cpu_uneven", "mpi");
}

INSTANTIATE_TEST_SUITE_P(Methods, DataParallel,
                         ::testing::Values("ga", "graddiff", "npo", "mollm", "ngdiff"));

// The kl loss counts padded positions, so every micro-batch of a step is padded to the step's
// longest sample: 2 micro-batches of 2 (and 2 ranks × 1 × accum 2) equal one batch of 4 for MOLLM
// and KL-GradDiff (seen failing, 4 % off, while each micro-batch padded to its own longest).
TEST(Dist, KlTermsWithAccumulationEqualOneBigBatch) {
  for (const char* m : {"mollm", "graddiff"}) {
    SCOPED_TRACE(m);
    const std::string one = lethe::testing::scratch_dir("dist_kl", std::string(m) + "one");
    const std::string acc = lethe::testing::scratch_dir("dist_kl", std::string(m) + "acc");
    const std::string two = lethe::testing::scratch_dir("dist_kl", std::string(m) + "two");
    std::vector<std::string> k1 = base_keys(m, one), ka = base_keys(m, acc), k2 = base_keys(m, two);
    for (std::vector<std::string>* k : {&k1, &ka, &k2}) {
      k->push_back("model.reference=tests/trainers/fixtures/methods/reference_model");
      if (std::string(m) == "graddiff") k->push_back("method.retain_loss=kl");
      // One step: over 5 steps the 6-sample epochs cut batches of 4 and of 2 × 2 differently;
      // sequential pairing: random draws are per micro-batch.
      k->insert(k->end(), {"trainer.max_steps=1", "data.pairing=sequential"});
    }
    k1.insert(k1.end(), {"trainer.batch_size=4", "trainer.grad_accum=1"});
    ka.insert(ka.end(), {"trainer.batch_size=2", "trainer.grad_accum=2"});
    k2.insert(k2.end(), {"trainer.batch_size=1", "trainer.grad_accum=2"});
    ASSERT_EQ(shell(lethe::testing::cli_binary() + " unlearn" + sets(k1)).status, 0);
    ASSERT_EQ(shell(lethe::testing::cli_binary() + " unlearn" + sets(ka)).status, 0);
    const Shell b =
        shell(mpirun_prefix() + " -np 2 " + lethe::testing::cli_binary() + " unlearn" + sets(k2));
    ASSERT_EQ(b.status, 0) << b.output;
    // Rounding (other summation orders; MOLLM's equalised norms scale the KL gradient up) stays
    // under 2e-5; padding each micro-batch to its own longest sample gave 1.5e-2 to 1.7e-1.
    double biggest = 0;
    EXPECT_LE(relative_update_error(acc, one, &biggest), 5e-5);
    EXPECT_GT(biggest, 1e-3);
    EXPECT_LE(relative_update_error(two, one, &biggest), 5e-5);
    EXPECT_GT(biggest, 1e-3);
  }
}

// lethe finetune with model.head: classifier runs through the shared loop, so it is data parallel
// like every run: 2 ranks × 2 texts equal 1 process × 4 (SGD, 3 steps), the backbone's update
// within 1e-5 of the largest and the score head within 1e-6.
TEST(Dist, ClassifierTwoRanksEqualOneRank) {
  const std::string model = "tests/trainers/fixtures/tofu_eval/model";
  const std::string data = lethe::testing::scratch_dir("dist_clf", "data") + "/labelled.jsonl";
  {
    std::ofstream f(data);
    for (int i = 0; i < 4; ++i)
      f << R"({"text": "How do I bake an apple pie )" << i << R"(?", "label": 0})" << '\n'
        << R"({"text": "How do I hurt someone )" << i << R"(? Take a knife.", "label": 1})" << '\n';
  }
  const std::string one = lethe::testing::scratch_dir("dist_clf", "one");
  const std::string two = lethe::testing::scratch_dir("dist_clf", "two");
  auto keys = [&](const std::string& out, int batch) {
    return std::vector<std::string>{"model.path=" + model,
                                    "model.head=classifier",
                                    "data.format=jsonl",
                                    "data.train=" + data,
                                    "trainer.optimizer=sgd",
                                    "trainer.lr=0.05",
                                    "trainer.scheduler=constant",
                                    "trainer.max_grad_norm=0",
                                    "trainer.weight_decay=0",
                                    "trainer.max_steps=3",
                                    "trainer.threads=1",
                                    "trainer.grad_accum=1",
                                    "trainer.batch_size=" + std::to_string(batch),
                                    "output.dir=" + out};
  };
  const Shell a = shell(lethe::testing::cli_binary() + " finetune" + sets(keys(one, 4)));
  ASSERT_EQ(a.status, 0) << a.output;
  const Shell b = shell(mpirun_prefix() + " -np 2 " + lethe::testing::cli_binary() + " finetune" +
                        sets(keys(two, 2)));
  ASSERT_EQ(b.status, 0) << b.output;
  double biggest = 0;
  EXPECT_LE(relative_update_error(two, one, &biggest, model), 1e-5);
  EXPECT_GT(biggest, 1e-4) << "the runs barely moved";
  const auto ha = tensors(one + "/model.safetensors").at("score.weight");
  const auto hb = tensors(two + "/model.safetensors").at("score.weight");
  ASSERT_EQ(ha.size(), hb.size());
  double worst = 0;
  for (size_t i = 0; i < ha.size(); ++i)
    worst = lethe::testing::nan_max(worst, std::fabs(ha[i] - hb[i]));
  EXPECT_LE(worst, 1e-6);
  std::ifstream run(two + "/run.json");
  const std::string text((std::istreambuf_iterator<char>(run)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("\"ranks\": 2"), std::string::npos);
}

TEST(Dist, GradientAccumulationTwoRanksEqualOneRank) {
  const std::string one = lethe::testing::scratch_dir("dist_accum", "one");
  const std::string two = lethe::testing::scratch_dir("dist_accum", "two");
  std::vector<std::string> k1 = base_keys("ngdiff", one), k2 = base_keys("ngdiff", two);
  k1.insert(k1.end(), {"trainer.batch_size=2", "trainer.grad_accum=2", "method.auto_lr=false"});
  k2.insert(k2.end(), {"trainer.batch_size=1", "trainer.grad_accum=2", "method.auto_lr=false"});
  ASSERT_EQ(shell(lethe::testing::cli_binary() + " unlearn" + sets(k1)).status, 0);
  const Shell b =
      shell(mpirun_prefix() + " -np 2 " + lethe::testing::cli_binary() + " unlearn" + sets(k2));
  ASSERT_EQ(b.status, 0) << b.output;
  double biggest = 0;
  EXPECT_LE(relative_update_error(two, one, &biggest), 1e-5);
  EXPECT_GT(biggest, 1e-3);
}

TEST(Dist, ZeroOneEqualsTheUnshardedOptimizer) {
  const std::string plain = lethe::testing::scratch_dir("dist_zero", "plain");
  const std::string sharded = lethe::testing::scratch_dir("dist_zero", "sharded");
  auto keys = [](const std::string& out, int batch) {
    std::vector<std::string> k = base_keys("graddiff", out);
    for (std::string& s : k)
      if (s == "trainer.optimizer=sgd") s = "trainer.optimizer=adamw";
    k.insert(k.end(), {"trainer.lr=1e-3", "trainer.weight_decay=0.01",
                       "trainer.batch_size=" + std::to_string(batch), "trainer.grad_accum=1"});
    return k;
  };
  std::vector<std::string> kz = keys(sharded, 2);
  kz.push_back("trainer.zero1=true");
  const Shell a = shell(mpirun_prefix() + " -np 2 " + lethe::testing::cli_binary() + " unlearn" +
                        sets(keys(plain, 2)));
  ASSERT_EQ(a.status, 0) << a.output;
  const Shell b =
      shell(mpirun_prefix() + " -np 2 " + lethe::testing::cli_binary() + " unlearn" + sets(kz));
  ASSERT_EQ(b.status, 0) << b.output;
  double biggest = 0;
  // GradDiff's weights do not depend on the Gram matrix, the sums of two ranks are the same in
  // either order, the optimizer is element-wise: identical weights.
  EXPECT_EQ(relative_update_error(sharded, plain, &biggest), 0.0);
  EXPECT_GT(biggest, 1e-3);
  // NGDiff (weights from the Gram matrix summed over the ranges) with clipping active (the norm
  // from the ranges too), SGD: equal to rounding.
  const std::string plain2 = lethe::testing::scratch_dir("dist_zero", "plain_clip");
  const std::string sharded2 = lethe::testing::scratch_dir("dist_zero", "sharded_clip");
  auto clip_keys = [](const std::string& out, bool z) {
    std::vector<std::string> k = base_keys("ngdiff", out);
    for (std::string& s : k)
      if (s == "trainer.max_grad_norm=0") s = "trainer.max_grad_norm=0.5";
    k.insert(k.end(), {"trainer.batch_size=2", "trainer.grad_accum=1", "trainer.momentum=0.9",
                       "method.auto_lr=false"});
    if (z) k.push_back("trainer.zero1=true");
    return k;
  };
  const std::string cmd = mpirun_prefix() + " -np 2 " + lethe::testing::cli_binary() + " unlearn";
  ASSERT_EQ(shell(cmd + sets(clip_keys(plain2, false))).status, 0);
  const Shell c = shell(cmd + sets(clip_keys(sharded2, true)));
  ASSERT_EQ(c.status, 0) << c.output;
  EXPECT_LE(relative_update_error(sharded2, plain2, &biggest), 1e-5);
  EXPECT_GT(biggest, 1e-3);
  std::ifstream run(sharded2 + "/run.json");
  const nlohmann::json j = nlohmann::json::parse(run);
  EXPECT_TRUE(j["host"]["zero1"].get<bool>());
  EXPECT_GT(j["steps"][0]["direction_norm"].get<double>(), 0.5);  // clipping was active
}

// ZeRO-1 over 3 ranks: the parameter count is not a multiple of 3, so the optimizer's ranges are
// uneven; NGDiff reads the Gram matrix summed over them. SGD with momentum: AdamW's first steps
// turn the rounding noise of k_proj.bias's zero gradient into ±lr either way (method fixtures).
TEST(Dist, ZeroOneOnThreeRanksEqualsTheUnshardedOptimizer) {
  auto keys = [](const std::string& out, bool z) {
    std::vector<std::string> k = base_keys("ngdiff", out);
    k.insert(k.end(), {"trainer.batch_size=2", "trainer.grad_accum=1", "trainer.momentum=0.9",
                       "method.auto_lr=false"});
    if (z) k.push_back("trainer.zero1=true");
    return k;
  };
  const std::string plain = lethe::testing::scratch_dir("dist_zero3", "plain");
  const std::string sharded = lethe::testing::scratch_dir("dist_zero3", "sharded");
  const std::string cmd = mpirun_prefix() + " -np 3 " + lethe::testing::cli_binary() + " unlearn";
  const Shell a = shell(cmd + sets(keys(plain, false)));
  ASSERT_EQ(a.status, 0) << a.output;
  const Shell b = shell(cmd + sets(keys(sharded, true)));
  ASSERT_EQ(b.status, 0) << b.output;
  double biggest = 0;
  EXPECT_LE(relative_update_error(sharded, plain, &biggest), 1e-5);
  EXPECT_GT(biggest, 1e-4);
}

TEST(Dist, ZeroOneCheckpointResumesToTheSameWeights) {
  const std::string full = lethe::testing::scratch_dir("dist_resume", "full");
  const std::string parts = lethe::testing::scratch_dir("dist_resume", "parts");
  auto keys = [](const std::string& out) {
    std::vector<std::string> k = base_keys("ngdiff", out);
    for (std::string& s : k)
      if (s == "trainer.optimizer=sgd") s = "trainer.optimizer=adamw";
    k.insert(k.end(), {"trainer.lr=1e-3", "trainer.batch_size=2", "trainer.grad_accum=1",
                       "trainer.zero1=true"});
    return k;
  };
  const std::string cmd = mpirun_prefix() + " -np 2 " + lethe::testing::cli_binary() + " unlearn";
  const Shell a = shell(cmd + sets(keys(full)));
  ASSERT_EQ(a.status, 0) << a.output;
  // Stopped after 3 of 5 steps (the sharded AdamW moments gathered into the checkpoint), resumed.
  const Shell b = shell(cmd + sets(keys(parts)) + " --stop-after 3");
  ASSERT_EQ(b.status, 0) << b.output;
  ASSERT_TRUE(fs::exists(parts + "/checkpoint/optimizer.safetensors"));
  std::vector<std::string> k = keys(parts);
  k.push_back("trainer.resume=true");
  const Shell c = shell(cmd + sets(k));
  ASSERT_EQ(c.status, 0) << c.output;
  double biggest = 0;
  EXPECT_EQ(relative_update_error(parts, full, &biggest), 0.0);
  EXPECT_GT(biggest, 1e-4);
}

TEST(Dist, ACorruptDataFileOnOneRankStopsBothQuickly) {
  // Each rank runs in its own folder with its own forget.jsonl under the same relative name, so
  // the recipes are identical and only rank 1's file is broken.
  const fs::path good = lethe::testing::scratch_dir("dist_fail", "good");
  const fs::path bad = lethe::testing::scratch_dir("dist_fail", "bad");
  const fs::path root = fs::current_path();
  fs::copy_file(root / kForget, good / "forget.jsonl", fs::copy_options::overwrite_existing);
  std::ofstream(bad / "forget.jsonl") << "{\"input_ids\": [2, 5, 6], \"labels\": [oops\n";
  std::vector<std::string> k = base_keys("ga", "out");
  for (std::string& s : k) {
    if (s.rfind("data.forget=", 0) == 0) s = "data.forget=forget.jsonl";
    if (s.rfind("model.path=", 0) == 0) s = "model.path=" + (root / kModel).string();
    if (s.rfind("data.retain=", 0) == 0) s = "data.retain=" + (root / kRetain).string();
  }
  k.push_back("trainer.batch_size=2");
  const std::string app = lethe::testing::cli_binary() + " unlearn" + sets(k);
  const Shell r = shell(mpirun_prefix() + " -np 1 -wdir " + good.string() + " " + app +
                            " : -np 1 -wdir " + bad.string() + " " + app,
                        60);
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_LT(r.seconds, 10.0) << r.output;
  EXPECT_NE(r.output.find("forget.jsonl"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("rank 1"), std::string::npos) << r.output;
}

TEST(Dist, DifferentRecipesOnTheRanksAreRefusedAtStart) {
  const std::string out = lethe::testing::scratch_dir("dist_cfg", "out");
  std::vector<std::string> k = base_keys("ga", out);
  k.push_back("trainer.batch_size=2");
  const std::string app = lethe::testing::cli_binary() + " unlearn" + sets(k);
  const Shell r =
      shell(mpirun_prefix() + " -np 1 " + app + " : -np 1 " + app + " --set trainer.lr=0.07", 60);
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_LT(r.seconds, 10.0);
  EXPECT_NE(r.output.find("differs from rank 0"), std::string::npos) << r.output;
}

// The same failure on every rank (a recipe mistake) is printed once, as one whole line.
TEST(Dist, AFailureOnEveryRankIsPrintedOnce) {
  const std::string out = lethe::testing::scratch_dir("dist_once", "out");
  std::vector<std::string> k = base_keys("ga", out);
  k.push_back("method.beta=0.5");  // not a parameter of ga: every rank refuses it
  const Shell r =
      shell(mpirun_prefix() + " -np 3 " + lethe::testing::cli_binary() + " unlearn" + sets(k), 60);
  EXPECT_EQ(r.status, 2) << r.output;
  size_t lines = 0;
  for (size_t at = r.output.find("lethe: error:"); at != std::string::npos;
       at = r.output.find("lethe: error:", at + 1))
    ++lines;
  EXPECT_EQ(lines, 1u) << r.output;
  EXPECT_NE(r.output.find("method.beta is not a parameter of ga"), std::string::npos) << r.output;
}

// lethe eval checks the recipe across ranks at start, as unlearn does.
TEST(Dist, EvalWithDifferentRecipesOnTheRanksIsRefused) {
  const std::string f = "tests/trainers/fixtures/tofu_eval/";
  const std::string out = lethe::testing::scratch_dir("dist_eval_cfg", "out");
  const std::string app = lethe::testing::cli_binary() + " eval" +
                          sets({"model.path=" + f + "model", "eval.forget=" + f + "forget.json",
                                "eval.max_new_tokens=4", "output.dir=" + out});
  const Shell r =
      shell(mpirun_prefix() + " -np 1 " + app + " : -np 1 " + app + " --set eval.batch_size=3", 60);
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("rank 1's resolved recipe differs from rank 0's"), std::string::npos)
      << r.output;
  EXPECT_FALSE(fs::exists(out + "/eval.json"));
}

TEST(Dist, EvalOnTwoRanksEqualsOneProcess) {
  // TOFU (probabilities, truth ratios, greedy answers), membership inference and perplexity:
  // each rank takes a block of every set, the per-sample results are gathered in order.
  const std::string f = "tests/trainers/fixtures/tofu_eval/";
  const std::string x = "tests/trainers/fixtures/eval_extra/";
  auto keys = [&](const std::string& out) {
    return std::vector<std::string>{"model.path=" + f + "model",
                                    "eval.forget=" + f + "forget.json",
                                    "eval.retain=" + f + "retain.json",
                                    "eval.retain_reference=" + f + "reference_model",
                                    "eval.max_new_tokens=24",
                                    "eval.batch_size=2",
                                    "eval.mia.forget=" + x + "mia_forget.json",
                                    "eval.mia.holdout=" + x + "mia_holdout.json",
                                    "eval.perplexity=" + x + "mia_forget.json",
                                    "output.dir=" + out};
  };
  const std::string one = lethe::testing::scratch_dir("dist_eval", "one");
  const std::string two = lethe::testing::scratch_dir("dist_eval", "two");
  const Shell a = shell(lethe::testing::cli_binary() + " eval" + sets(keys(one)));
  ASSERT_EQ(a.status, 0) << a.output;
  const Shell b =
      shell(mpirun_prefix() + " -np 2 " + lethe::testing::cli_binary() + " eval" + sets(keys(two)));
  ASSERT_EQ(b.status, 0) << b.output;
  const nlohmann::json ja = nlohmann::json::parse(std::ifstream(one + "/eval.json"));
  const nlohmann::json jb = nlohmann::json::parse(std::ifstream(two + "/eval.json"));
  // Every number within 1e-5 (other batch shapes), every generated text equal; walked recursively.
  int compared = 0;
  std::function<void(const nlohmann::json&, const nlohmann::json&, const std::string&)> walk =
      [&](const nlohmann::json& p, const nlohmann::json& q, const std::string& at) {
        ASSERT_EQ(p.type(), q.type()) << at;
        if (p.is_object()) {
          ASSERT_EQ(p.size(), q.size()) << at;
          for (auto it = p.begin(); it != p.end(); ++it) {
            if (it.key() == "model") continue;  // the path is the same; output dirs differ
            walk(it.value(), q.at(it.key()), at + "." + it.key());
          }
        } else if (p.is_array()) {
          ASSERT_EQ(p.size(), q.size()) << at;
          for (size_t i = 0; i < p.size(); ++i)
            walk(p[i], q[i], at + "[" + std::to_string(i) + "]");
        } else if (p.is_number_float()) {
          EXPECT_NEAR(p.get<double>(), q.get<double>(),
                      1e-5 * std::max(1.0, std::fabs(q.get<double>())))
              << at;
          ++compared;
        } else {
          EXPECT_EQ(p, q) << at;
          ++compared;
        }
      };
  walk(ja, jb, "eval.json");
  EXPECT_GT(compared, 200);
  EXPECT_TRUE(jb.contains("mia") && jb.contains("perplexity") && jb.contains("splits"));
}

}  // namespace

// ---- NCCL and the trainer's CUDA path
// ------------------------------------------------------------ *OnCuda: the `cuda` label only
// (under the CUDA emulator in `make test`, NCCL runs over MPI; on a GPU machine, one GPU per rank).
// Each rank drives cuda:<local rank>.
namespace {

bool on_cuda() {
  const char* d = std::getenv("LETHE_TEST_DEVICE");
  return d != nullptr && std::string(d) == "cuda";
}

TEST(DistOnCuda, NcclCollectivesOnTwoAndThreeRanks) {
  ASSERT_TRUE(on_cuda()) << "runs with LETHE_TEST_DEVICE=cuda only";
  for (int n : {2, 3}) {
    const Shell r = shell(mpirun_prefix() + " -np " + std::to_string(n) + " " +
                          lethe::testing::collectives_binary() + " --cuda");
    EXPECT_EQ(r.status, 0) << r.output;
    for (int k = 0; k < n; ++k)
      EXPECT_NE(
          r.output.find("nccl rank " + std::to_string(k) + " of " + std::to_string(n) + ": ok"),
          std::string::npos)
          << r.output;
  }
}

// N ranks on CUDA with B samples each = one CUDA process with N·B (2 ranks × 3, 3 ranks × 2).
class DataParallelOnCuda : public ::testing::TestWithParam<std::string> {};

TEST_P(DataParallelOnCuda, RanksEqualOneProcessWithTheWholeBatch) {
  ASSERT_TRUE(on_cuda()) << "runs with LETHE_TEST_DEVICE=cuda only";
  for (int n : {2, 3})
    expect_ranks_equal_one_process(GetParam(), n, 6 / n, {"model.device=cuda"}, "cuda", "nccl");
}

INSTANTIATE_TEST_SUITE_P(Methods, DataParallelOnCuda, ::testing::Values("ga", "npo", "ngdiff"));

}  // namespace
