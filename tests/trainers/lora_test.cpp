// LoRA against peft (tools/fixtures/make_lora_fixtures.py → tests/trainers/fixtures/lora/): a
// PEFT-saved adapter gives PEFT's logits, merges to PEFT's merged weights, saves back in the same
// layout; SGD steps over the adapter equal PyTorch + peft (one step of GA, NPO and NGDiff; two of
// GradDiff with a KL retain term and of ga_mismatch_kl, whose KL to the starting model is zero at
// step 1 and not at step 2; two of MOLLM with model.reference), step by step; plus frozen base
// memory, the merged output of a LoRA run, resume, and bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/io/json.h"
#include "engine/io/safetensors.h"
#include "models/causal_lm.h"
#include "models/lora.h"
#include "tests/common/compare.h"
#include "tests/common/device.h"
#include "tests/common/expect_error.h"
#include "tests/common/paths.h"
#include "tests/common/temp_dir.h"
#include "tests/trainers/fixture_steps.h"
#include "trainers/config.h"
#include "trainers/trainer.h"

namespace lethe::trainers {
namespace {

using lethe::testing::within;
const std::string kDir = "tests/trainers/fixtures/lora";
const std::string kBase = "tests/trainers/fixtures/methods/model";
// The same on a tiny Llama, every linear layer targeted (make_lora_fixtures.py --family llama).
const std::string kLlamaDir = "tests/trainers/fixtures/lora_llama";
const std::string kLlamaBase = "tests/trainers/fixtures/methods_llama/model";

const nlohmann::json& ref(const std::string& dir = kDir) {
  static std::map<std::string, nlohmann::json> cache;
  auto it = cache.find(dir);
  if (it == cache.end()) it = cache.emplace(dir, io::read_json_file(dir + "/reference.json")).first;
  return it->second;
}

// A peft fixture and the base model it was made on.
struct PeftFixture {
  std::string dir, base;
};
const std::vector<PeftFixture>& peft_fixtures() {
  static const std::vector<PeftFixture> f = {{kDir, kBase}, {kLlamaDir, kLlamaBase}};
  return f;
}

std::map<std::string, std::vector<double>> read_tensors(const std::string& path) {
  std::map<std::string, std::vector<double>> out;
  const io::SafetensorsFile f = io::SafetensorsFile::open(path);
  for (const io::TensorInfo& t : f.tensors())
    out[t.name] = Tensor::from_borrowed(const_cast<void*>(t.data), t.shape, t.dtype, f.keepalive())
                      .to_double_vector();
  return out;
}

using lethe::testing::expect_error;

Tensor batch_logits(const models::CausalLM& m, const std::string& dir = kDir) {
  const nlohmann::json& l = ref(dir)["logits"];
  std::vector<int64_t> ids, mask;
  for (const auto& row : l["input_ids"])
    for (const auto& v : row) ids.push_back(v.get<int64_t>());
  for (const auto& row : l["attention_mask"])
    for (const auto& v : row) mask.push_back(v.get<int64_t>());
  const Shape s{static_cast<int64_t>(l["input_ids"].size()),
                static_cast<int64_t>(l["input_ids"][0].size())};
  return m.logits(Tensor::from_vector(ids, s, DType::i64),
                  Tensor::from_vector(mask, s, DType::i64));
}

// Max |got − want| over positions with attention (padded positions are not compared).
double max_diff(const std::vector<double>& got, const std::vector<double>& want,
                const std::string& dir = kDir) {
  const nlohmann::json& l = ref(dir)["logits"];
  const size_t V = got.size() / (l["input_ids"].size() * l["input_ids"][0].size());
  if (got.size() != want.size() || V == 0) return std::numeric_limits<double>::infinity();
  double worst = 0;
  size_t pos = 0;
  for (const auto& row : l["attention_mask"])
    for (const auto& m : row) {
      if (m.get<int64_t>() == 1)
        for (size_t v = 0; v < V; ++v)
          worst = lethe::testing::nan_max(worst, std::fabs(got[pos * V + v] - want[pos * V + v]));
      ++pos;
    }
  return worst;
}

class LoraPeft : public ::testing::TestWithParam<PeftFixture> {};

TEST_P(LoraPeft, AdapterGivesPeftLogitsAndOffGivesTheBase) {
  const auto [dir, base] = GetParam();
  const auto logits = read_tensors(dir + "/logits.safetensors");
  auto model =
      models::load_causal_lm(base, lethe::testing::test_device(), {models::none_trainable});
  const auto adapter = models::LoraAdapter::load(*model, dir + "/adapter", false);
  EXPECT_EQ(adapter->layers().size(), ref(dir)["adapter_config"]["target_modules"].size() * 2);
  EXPECT_DOUBLE_EQ(adapter->config().scaling(), ref(dir)["lora"]["scaling"].get<double>());
  EXPECT_EQ(adapter->parameters().numel(), ref(dir)["adapter_numel"].get<int64_t>());
  EXPECT_LT(max_diff(batch_logits(*model, dir).to_double_vector(), logits.at("base"), dir), 1e-5);
  model->set_linear_fn(adapter->hook());
  const double d =
      max_diff(batch_logits(*model, dir).to_double_vector(), logits.at("adapter"), dir);
  EXPECT_LT(d, 1e-5) << d;
  // The adapter does change the logits (the check above is not the base twice).
  EXPECT_GT(max_diff(logits.at("adapter"), logits.at("base"), dir), 0.5);
}

TEST_P(LoraPeft, MergeEqualsPeftsMergedCheckpointAndItsLogits) {
  const auto [dir, base] = GetParam();
  auto model = models::load_causal_lm(base, Device::cpu(), {models::none_trainable});
  models::LoraAdapter::load(*model, dir + "/adapter", false)->merge_into(*model);
  const std::string out = lethe::testing::scratch_dir("lora", "merge");
  model->save(out);
  const auto got = read_tensors(out + "/model.safetensors");
  const auto want = read_tensors(dir + "/merged/model.safetensors");
  ASSERT_EQ(got.size(), want.size());
  double worst = 0;
  for (const auto& [name, w] : want) {
    ASSERT_TRUE(got.count(name)) << name;
    ASSERT_EQ(got.at(name).size(), w.size()) << name;
    for (size_t i = 0; i < w.size(); ++i)
      worst = lethe::testing::nan_max(worst, std::fabs(got.at(name)[i] - w[i]));
  }
  EXPECT_LT(worst, 1e-6);
  // Merged logits = base + adapter logits.
  const auto logits = read_tensors(dir + "/logits.safetensors");
  EXPECT_LT(max_diff(batch_logits(*model, dir).to_double_vector(), logits.at("adapter"), dir),
            1e-5);
}

TEST_P(LoraPeft, SaveWritesPeftsNamesShapesValuesAndConfig) {
  const auto [dir, base] = GetParam();
  auto model = models::load_causal_lm(base, Device::cpu(), {models::none_trainable});
  const auto adapter = models::LoraAdapter::load(*model, dir + "/adapter", false);
  const std::string out = lethe::testing::scratch_dir("lora", "save");
  adapter->save(out);
  const auto got = read_tensors(out + "/adapter_model.safetensors");
  const auto want = read_tensors(dir + "/adapter/adapter_model.safetensors");
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [name, w] : want) {
    ASSERT_TRUE(got.count(name)) << name;
    EXPECT_EQ(got.at(name), w) << name;
  }
  const io::SafetensorsFile f = io::SafetensorsFile::open(out + "/adapter_model.safetensors");
  for (const auto& t : ref(dir)["adapter_tensors"]) {
    const io::TensorInfo* info = f.find(t["name"].get<std::string>());
    ASSERT_NE(info, nullptr);
    EXPECT_EQ(info->shape, t["shape"].get<std::vector<int64_t>>());
    EXPECT_EQ(info->dtype, DType::f32);
  }
  const nlohmann::json c = io::read_json_file(out + "/adapter_config.json");
  const nlohmann::json& p = ref(dir)["adapter_config"];
  for (const char* key :
       {"peft_type", "r", "lora_alpha", "lora_dropout", "bias", "task_type", "fan_in_fan_out",
        "use_dora", "use_rslora", "base_model_name_or_path", "modules_to_save"})
    EXPECT_EQ(c[key], p[key]) << key;
  // target_modules: the same set (peft writes a set in hash order).
  auto sorted = [](std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    return v;
  };
  EXPECT_EQ(sorted(c["target_modules"].get<std::vector<std::string>>()),
            sorted(p["target_modules"].get<std::vector<std::string>>()));
  // And it loads back.
  const auto back = models::LoraAdapter::load(*model, out, false);
  EXPECT_EQ(back->layers(), adapter->layers());
}

INSTANTIATE_TEST_SUITE_P(Families, LoraPeft, ::testing::ValuesIn(peft_fixtures()),
                         [](const auto& info) {
                           return info.param.dir == kDir ? std::string("opt")
                                                         : std::string("llama");
                         });

// One step's scalars against the fixture's (tests/trainers/fixture_steps.h).
void expect_step(const nlohmann::json& s, const StepRecord& r) {
  expect_step_scalars(s, r);
}

// Every step's scalars and the adapter after the last step; a run of several steps stopped after
// the first and resumed writes the same bytes.
class LoraStep : public ::testing::TestWithParam<std::string> {};

void expect_lora_case_equals_peft(const std::string& dir, const std::string& name) {
  const nlohmann::json* cp = nullptr;
  for (const auto& c : ref(dir)["cases"])
    if (c["name"] == name) cp = &c;
  ASSERT_NE(cp, nullptr);
  const nlohmann::json& c = *cp;
  auto sets_for = [&](const std::string& out) {
    std::vector<std::string> sets = c["set"].get<std::vector<std::string>>();
    sets.push_back("output.dir=" + out);
    for (const std::string& e : lethe::testing::test_device_sets()) sets.push_back(e);
    return sets;
  };
  const std::string out = lethe::testing::scratch_dir("lora", name);
  std::ostringstream log;
  TrainerOptions o;
  o.log = &log;
  const int64_t steps = fixture_max_steps(c);
  {
    Trainer t(load_config("", sets_for(out), RunKind::unlearn), o);
    // The base is frozen: no gradient memory for it.
    EXPECT_EQ(t.model().parameters().flat_grad_size(), 0);
    EXPECT_EQ(t.run(), steps);
    const std::vector<const nlohmann::json*> want = fixture_steps(c);
    ASSERT_EQ(static_cast<int64_t>(want.size()), steps);
    ASSERT_EQ(static_cast<int64_t>(t.steps().size()), steps);
    for (size_t s = 0; s < want.size(); ++s) {
      SCOPED_TRACE("step " + std::to_string(s + 1) + " of " + std::to_string(want.size()));
      expect_step(*want[s], t.steps()[s]);
    }
  }
  const auto before = read_tensors(dir + "/adapter/adapter_model.safetensors");
  const auto want = read_tensors(dir + "/" + c["expected"].get<std::string>());
  const auto got = read_tensors(out + "/adapter_model.safetensors");
  ASSERT_EQ(got.size(), want.size());
  const double max_ref = c["max_abs_update"].get<double>();
  ASSERT_GT(max_ref, 1e-3);
  double worst = 0;
  for (const auto& [name, w] : want) {
    ASSERT_TRUE(got.count(name)) << name;
    ASSERT_EQ(got.at(name).size(), w.size()) << name;
    ASSERT_EQ(before.at(name).size(), w.size()) << name;
    for (size_t i = 0; i < w.size(); ++i)
      worst = lethe::testing::nan_max(
          worst, std::fabs((got.at(name)[i] - before.at(name)[i]) - (w[i] - before.at(name)[i])));
  }
  EXPECT_LE(worst, 1e-4 * max_ref) << "worst update error " << worst;
  const nlohmann::json run = io::read_json_file(out + "/run.json");
  EXPECT_EQ(run["lora"]["trainable_parameters"].get<int64_t>(),
            ref(dir)["adapter_numel"].get<int64_t>());
  if (steps < 2) return;
  // Interrupted after 1 step, resumed: the same bytes (the reference adapter of the KL terms is
  // the starting one again, not the checkpoint's).
  const std::string out2 = lethe::testing::scratch_dir("lora", name + "_resume");
  {
    TrainerOptions stop = o;
    stop.stop_after = 1;
    Trainer t(load_config("", sets_for(out2), RunKind::unlearn), stop);
    EXPECT_EQ(t.run(), 1);
  }
  {
    std::vector<std::string> v = sets_for(out2);
    v.push_back("trainer.resume=true");
    Trainer t(load_config("", v, RunKind::unlearn), o);
    EXPECT_EQ(t.run(), steps - 1);
  }
  EXPECT_EQ(read_tensors(out2 + "/adapter_model.safetensors"), got);
}

TEST_P(LoraStep, SgdStepsEqualPeft) {
  expect_lora_case_equals_peft(kDir, GetParam());
}
INSTANTIATE_TEST_SUITE_P(Peft, LoraStep, ::testing::ValuesIn(fixture_case_names(kDir)),
                         [](const auto& info) { return info.param; });

// The same six cases on the tiny Llama with q, k, v, o, gate, up and down adapted.
class LlamaLoraStep : public ::testing::TestWithParam<std::string> {};
TEST_P(LlamaLoraStep, SgdStepsEqualPeft) {
  expect_lora_case_equals_peft(kLlamaDir, GetParam());
}
INSTANTIATE_TEST_SUITE_P(Peft, LlamaLoraStep, ::testing::ValuesIn(fixture_case_names(kLlamaDir)),
                         [](const auto& info) { return info.param; });

// The peft fixture holds the six cases, every method that has no fixture is in LoraMethod below,
// and no fixture term is ~0 unless it is zero by construction (a KL to the starting model at step
// 1): a term of 1e-9 would pass any absolute tolerance untested.
TEST(LoraCases, SixCasesAndNoTermIsNearZero) {
  const auto& cases = ref()["cases"];
  EXPECT_EQ(cases.size(), 6u);
  std::set<std::string> methods;
  int zero = 0;
  for (const nlohmann::json& c : cases) {
    for (const std::string& s : c.at("set").get<std::vector<std::string>>())
      if (s.rfind("method.name=", 0) == 0) methods.insert(s.substr(12));
    const auto sets = c.at("set").get<std::vector<std::string>>();
    EXPECT_NE(std::find(sets.begin(), sets.end(),
                        "trainer.max_steps=" + std::to_string(fixture_max_steps(c))),
              sets.end())
        << c.at("name");
    EXPECT_EQ(static_cast<int64_t>(fixture_steps(c).size()), fixture_max_steps(c)) << c.at("name");
    for (const nlohmann::json* s : fixture_steps(c)) {
      const std::set<std::string> z = fixture_zero_terms(*s);
      for (const nlohmann::json& o : s->at("objectives")) {
        if (z.count(o.at("name").get<std::string>())) {
          ++zero;
          EXPECT_TRUE(within(o.at("grad_norm").get<double>(), 0, 1e-12, 0)) << c.at("name");
        } else {
          EXPECT_GE(o.at("grad_norm").get<double>(), 1e-2)
              << c.at("name") << ": " << o.at("name") << " is near zero and not a zero term";
        }
      }
    }
  }
  EXPECT_EQ(zero, 2);  // step 1 of lora_graddiff_kl and lora_ga_mismatch_kl
  EXPECT_EQ(methods,
            (std::set<std::string>{"ga", "npo", "ngdiff", "graddiff", "ga_mismatch_kl", "mollm"}));
}

TEST(Lora, FreshAdapterRunWritesTheMergedModelAndStartsAtTheBase) {
  // A fresh adapter (B = 0) starts exactly at the base model, so NPO's reference (the adapters off)
  // is the starting model: the first forget loss is 2/β·log 2 per sample, as without LoRA.
  const std::string out = lethe::testing::scratch_dir("lora", "fresh");
  std::vector<std::string> sets = {"model.path=" + kBase,
                                   "data.format=tokenized",
                                   "data.forget=tests/trainers/fixtures/methods/forget.jsonl",
                                   "data.retain=tests/trainers/fixtures/methods/retain.jsonl",
                                   "method.name=npo",
                                   "lora.enabled=true",
                                   "lora.r=2",
                                   "lora.targets=[q_proj, k_proj, v_proj, out_proj, fc1, fc2]",
                                   "trainer.lr=0.05",
                                   "trainer.max_steps=2",
                                   "trainer.batch_size=2",
                                   "trainer.grad_accum=1",
                                   "trainer.warmup_steps=0",
                                   "output.dir=" + out};
  std::ostringstream log;
  TrainerOptions o;
  o.log = &log;
  Trainer t(load_config("", sets, RunKind::unlearn), o);
  t.run();
  EXPECT_NEAR(t.steps()[0].losses[0], 2 / 0.1 * std::log(2.0), 1e-5);
  EXPECT_NE(t.steps()[1].losses[0], t.steps()[0].losses[0]);
  // output.format full: the merged weights; they give the trained model's logits.
  const auto merged = models::load_causal_lm(out, Device::cpu(), {models::none_trainable});
  const auto lm = batch_logits(t.model()).to_double_vector();
  EXPECT_LT(max_diff(batch_logits(*merged).to_double_vector(), lm), 1e-5);
  // The base weights in memory were restored after the merged save.
  const auto base = models::load_causal_lm(kBase, Device::cpu(), {models::none_trainable});
  const auto bw = base->parameters().get("layers.0.fc2.weight").to_double_vector();
  EXPECT_EQ(t.model().parameters().get("layers.0.fc2.weight").to_double_vector(), bw);
  const nlohmann::json run = io::read_json_file(out + "/run.json");
  EXPECT_EQ(run["lora"]["layers"].get<int>(), 12);
}

TEST(Lora, BadInputIsAClearError) {
  const std::vector<std::string> ok = {"model.path=" + kBase, "data.format=tokenized",
                                       "data.forget=tests/trainers/fixtures/methods/forget.jsonl",
                                       "method.name=ga",
                                       "output.dir=" + lethe::testing::scratch_dir("lora", "bad")};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> v = ok;
    v.insert(v.end(), extra.begin(), extra.end());
    return v;
  };
  expect_error(
      [&] {
        load_config("", with({"lora.enabled=true", "lora.r=0"}), RunKind::unlearn);
      },
      {"lora.r", "out of range"});
  expect_error([&] { load_config("", with({"lora.r=4"}), RunKind::unlearn); },
               {"lora.r is set but lora.enabled is false"});
  expect_error([&] { load_config("", with({"output.format=adapter"}), RunKind::unlearn); },
               {"output.format adapter needs lora.enabled"});
  expect_error(
      [&] {
        Trainer t(load_config("", with({"lora.enabled=true", "lora.targets=q_proj,wq"}),
                              RunKind::unlearn));
      },
      {"unknown target \"wq\"", "q_proj", "fc2"});
  // An adapter made for another base model (hidden 16) on the TOFU fixture model (hidden 32).
  const auto other = models::load_causal_lm("tests/trainers/fixtures/tofu_eval/model",
                                            Device::cpu(), {models::none_trainable});
  expect_error([&] { models::LoraAdapter::load(*other, kDir + "/adapter", false); },
               {"adapter_model.safetensors", "lora_A.weight", "shape", "another base model"});
  expect_error([&] { models::LoraAdapter::load(*other, kBase, false); },
               {"adapter_config.json", "does not exist"});
}

// Methods (and fine-tuning) train through the adapter alone: finite losses, the adapter moves,
// the base weights in memory do not; with lora.dropout, and resumed exactly. GradDiff (KL),
// ga_mismatch_kl and MOLLM are compared with peft step by step, resume included, in LoraStep.
class LoraMethod : public ::testing::TestWithParam<std::string> {};

TEST_P(LoraMethod, TrainsTheAdapterAloneAndResumesExactly) {
  const std::string m = GetParam();
  const bool finetune = m == "sft";
  auto sets_for = [&](const std::string& out) {
    std::vector<std::string> v = {"model.path=" + kBase,   "data.format=tokenized",
                                  "lora.enabled=true",     "lora.r=3",
                                  "lora.dropout=0.1",      "lora.targets=q_proj,out_proj,fc2",
                                  "output.format=adapter", "trainer.lr=0.01",
                                  "trainer.max_steps=3",   "trainer.batch_size=2",
                                  "trainer.grad_accum=1",  "trainer.warmup_steps=0",
                                  "output.dir=" + out};
    for (const std::string& e : lethe::testing::test_device_sets()) v.push_back(e);
    if (finetune) {
      v.push_back("data.train=tests/trainers/fixtures/methods/forget.jsonl");
    } else {
      v.push_back("method.name=" + m);
      v.push_back("data.forget=tests/trainers/fixtures/methods/forget.jsonl");
      v.push_back("data.retain=tests/trainers/fixtures/methods/retain.jsonl");
    }
    return v;
  };
  const RunKind kind = finetune ? RunKind::finetune : RunKind::unlearn;
  const std::string out = lethe::testing::scratch_dir("lora_method", m);
  std::ostringstream log;
  TrainerOptions o;
  o.log = &log;
  const auto base = models::load_causal_lm(kBase, Device::cpu(), {models::none_trainable});
  {
    Trainer t(load_config("", sets_for(out), kind), o);
    EXPECT_EQ(t.run(), 3);
    for (const StepRecord& r : t.steps())
      for (double l : r.losses) EXPECT_TRUE(std::isfinite(l)) << m;
    for (const std::string& n : base->parameters().names())
      EXPECT_EQ(t.model().parameters().get(n).to_double_vector(),
                base->parameters().get(n).to_double_vector())
          << n;
  }
  const auto got = read_tensors(out + "/adapter_model.safetensors");
  EXPECT_EQ(got.size(), 12u);  // 2 layers × 3 targets × (A, B)
  bool moved = false;
  for (const auto& [name, v] : got)
    if (name.find("lora_B") != std::string::npos)
      for (double x : v) moved = moved || x != 0;
  EXPECT_TRUE(moved) << "B never left zero";
  // Interrupted after 1 step, resumed: the same bytes.
  const std::string out2 = lethe::testing::scratch_dir("lora_method", m + "_resume");
  {
    TrainerOptions stop = o;
    stop.stop_after = 1;
    Trainer t(load_config("", sets_for(out2), kind), stop);
    EXPECT_EQ(t.run(), 1);
  }
  {
    std::vector<std::string> v = sets_for(out2);
    v.push_back("trainer.resume=true");
    Trainer t(load_config("", v, kind), o);
    EXPECT_EQ(t.run(), 2);
  }
  EXPECT_EQ(read_tensors(out2 + "/adapter_model.safetensors"), got);
}

INSTANTIATE_TEST_SUITE_P(Every, LoraMethod,
                         ::testing::Values("ga", "npo", "simnpo", "ngdiff", "sft"));

// A broken adapter folder: each mistake named with the file and field or tensor.
TEST(Lora, BrokenAdaptersNameTheFieldOrTensor) {
  const auto model = models::load_causal_lm(kBase, Device::cpu(), {models::none_trainable});
  const nlohmann::json good = io::read_json_file(kDir + "/adapter/adapter_config.json");
  const auto tensors = read_tensors(kDir + "/adapter/adapter_model.safetensors");
  int n = 0;
  // config.json edited, tensors as peft wrote them (or as `edit` leaves them).
  auto broken = [&](const std::function<void(nlohmann::json&)>& edit_config,
                    const std::function<void(std::map<std::string, std::vector<double>>&)>& edit) {
    const std::string dir = lethe::testing::scratch_dir("lora_bad", std::to_string(n++));
    nlohmann::json c = good;
    edit_config(c);
    io::write_json_file(dir + "/adapter_config.json", c);
    auto t = tensors;
    edit(t);
    std::vector<std::vector<float>> keep;
    std::vector<io::TensorToWrite> out;
    const io::SafetensorsFile f =
        io::SafetensorsFile::open(kDir + "/adapter/adapter_model.safetensors");
    for (const auto& [name, v] : t) {
      keep.emplace_back(v.begin(), v.end());
      const io::TensorInfo* info = f.find(name);
      out.push_back({name, DType::f32,
                     info ? info->shape : std::vector<int64_t>{static_cast<int64_t>(v.size())},
                     keep.back().data()});
    }
    io::write_safetensors(dir + "/adapter_model.safetensors", out);
    return dir;
  };
  auto same = [](std::map<std::string, std::vector<double>>&) {};
  auto load = [&](const std::string& dir) { models::LoraAdapter::load(*model, dir, false); };
  const std::string a_name = "base_model.model.model.decoder.layers.0.fc1.lora_A.weight";
  expect_error(
      [&] { load(broken([](nlohmann::json& c) { c["peft_type"] = "PREFIX_TUNING"; }, same)); },
      {"adapter_config.json", "peft_type"});
  expect_error([&] { load(broken([](nlohmann::json& c) { c.erase("r"); }, same)); },
               {"adapter_config.json", "\"r\" is missing"});
  expect_error([&] { load(broken([](nlohmann::json& c) { c["use_dora"] = true; }, same)); },
               {"use_dora", "not supported"});
  expect_error(
      [&] { load(broken([](nlohmann::json& c) { c["target_modules"] = ".*proj"; }, same)); },
      {"target_modules", "regex"});
  expect_error(
      [&] {
        load(broken([](nlohmann::json& c) { c["target_modules"] = {"q_proj", "wq"}; }, same));
      },
      {"unknown target \"wq\""});
  expect_error([&] { load(broken([](nlohmann::json&) {}, [&](auto& t) { t.erase(a_name); })); },
               {"adapter_model.safetensors", a_name, "missing"});
  expect_error(
      [&] {
        load(broken([](nlohmann::json&) {},
                    [](auto& t) { t["base_model.model.lm_head.lora_A.weight"] = {1.0}; }));
      },
      {"unexpected tensor", "lm_head"});
  expect_error(
      [&] { load(broken([](nlohmann::json&) {}, [&](auto& t) { t[a_name][3] = std::nan(""); })); },
      {a_name, "non-finite"});
  // lora.targets that names nothing.
  expect_error(
      [&] {
        Trainer t(load_config("",
                              {"model.path=" + kBase, "data.format=tokenized",
                               "data.forget=tests/trainers/fixtures/methods/forget.jsonl",
                               "method.name=ga", "lora.enabled=true", "lora.targets=[ ]",
                               "output.dir=" + lethe::testing::scratch_dir("lora_bad", "targets")},
                              RunKind::unlearn));
      },
      {"lora.targets names no layer"});
}

}  // namespace
}  // namespace lethe::trainers
