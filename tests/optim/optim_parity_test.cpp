// Parity of AdamW, SGD, clip_grad_norm and LR schedules with torch.optim / transformers: replays
// the gradients of tests/optim/fixtures/optim.json and compares the parameters after every step.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "engine/autograd.h"
#include "engine/device_backend.h"
#include "engine/lr_schedule.h"
#include "engine/optim.h"
#include "engine/parameters.h"
#include "tests/common/compare.h"
#include "tests/common/paths.h"

namespace lethe {
namespace {

using nlohmann::json;

constexpr double kNormRel = 1e-6;  // per parameter: ||ours - torch|| / ||torch||
constexpr double kElemAtol = 2e-7, kElemRtol = 2e-6;

const json& fixture() {
  static const json doc = [] {
    std::string path = lethe::testing::source_dir() + "/tests/optim/fixtures/optim.json";
    std::ifstream f(path);
    if (!f) throw std::runtime_error("cannot open " + path);
    return json::parse(f);
  }();
  return doc;
}

// Worst errors over every case, printed at the end (the numbers docs/optim.md quotes).
struct Worst {
  double norm_rel = 0, elem_abs = 0, clip_norm_rel = 0, lr_rel = 0;
  ~Worst() {
    std::printf(
        "[optim parity] max per-parameter relative error %.3g, max elementwise abs error "
        "%.3g, max clip-norm relative error %.3g, max lr relative error %.3g\n",
        norm_rel, elem_abs, clip_norm_rel, lr_rel);
  }
};
Worst worst;

std::vector<float> as_floats(const json& a) {
  std::vector<float> v;
  for (const auto& x : a) v.push_back(static_cast<float>(x.get<double>()));
  return v;
}

double rel(double a, double b) {
  return std::abs(a - b) / std::max(std::abs(b), 1e-300);
}

// The fixture's parameters plus a frozen one in the middle (torch never sees it; it must stay put).
struct Model {
  ParameterStore store;
  std::vector<std::string> names;
  std::vector<float> frozen_init;
};

std::unique_ptr<Model> make_model(const json& doc) {
  auto m = std::make_unique<Model>();
  NoGradGuard ng;
  const auto& params = doc["params"];
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& p = params[i];
    Shape shape = p["shape"].get<Shape>();
    Tensor t = m->store.add(p["name"].get<std::string>(), shape);
    m->names.push_back(p["name"].get<std::string>());
    // Half the values are set before allocate() (must survive the move into the flat buffer).
    if (i % 2 == 0) t.copy_(Tensor::from_vector(as_floats(p["init"]), shape));
    if (i == 0) {
      m->frozen_init = {0.5f, -1.5f, 2.5f, 3.0f, -0.25f, 7.0f};
      m->store.add("frozen", {2, 3}, /*trainable=*/false)
          .copy_(Tensor::from_vector(m->frozen_init, {2, 3}));
    }
  }
  m->store.allocate(Device::cpu());
  for (size_t i = 1; i < params.size(); i += 2) {
    Shape shape = params[i]["shape"].get<Shape>();
    m->store.get(m->names[i]).copy_(Tensor::from_vector(as_floats(params[i]["init"]), shape));
  }
  return m;
}

std::unique_ptr<Optimizer> make_optimizer(ParameterStore& store, const json& c) {
  const json& o = c["options"];
  if (c["optimizer"] == "adamw") {
    AdamWOptions a;
    a.lr = o["lr"];
    a.beta1 = o["beta1"];
    a.beta2 = o["beta2"];
    a.eps = o["eps"];
    a.weight_decay = o["weight_decay"];
    return std::make_unique<AdamW>(store, a);
  }
  SgdOptions s;
  s.lr = o["lr"];
  s.momentum = o["momentum"];
  s.dampening = o["dampening"];
  s.weight_decay = o["weight_decay"];
  s.nesterov = o["nesterov"];
  return std::make_unique<SGD>(store, s);
}

std::optional<LrSchedule> make_schedule(const json& spec, double base_lr) {
  if (spec.is_null()) return std::nullopt;
  return LrSchedule(parse_lr_schedule_kind(spec["kind"]), base_lr, spec.value("warmup", 0),
                    spec.value("total", 0));
}

// Returns the largest per-parameter relative error of this step.
double compare_params(const Model& m, const json& expected, const std::string& where) {
  double step_worst = 0;
  for (size_t i = 0; i < m.names.size(); ++i) {
    std::vector<float> ours = m.store.get(m.names[i]).to_float_vector();
    std::vector<float> ref = as_floats(expected[i]);
    if (ours.size() != ref.size()) {
      ADD_FAILURE() << where << " parameter " << m.names[i] << ": " << ours.size() << " vs "
                    << ref.size() << " elements";
      return 1.0;
    }
    double diff2 = 0, ref2 = 0;
    for (size_t e = 0; e < ref.size(); ++e) {
      double d = static_cast<double>(ours[e]) - ref[e];
      diff2 += d * d;
      ref2 += static_cast<double>(ref[e]) * ref[e];
      worst.elem_abs = lethe::testing::nan_max(worst.elem_abs, std::abs(d));
      EXPECT_LE(std::abs(d), kElemAtol + kElemRtol * std::abs(ref[e]))
          << where << " parameter " << m.names[i] << " element " << e << ": ours " << ours[e]
          << " torch " << ref[e];
    }
    double r = std::sqrt(diff2 / std::max(ref2, 1e-300));
    worst.norm_rel = lethe::testing::nan_max(worst.norm_rel, r);
    step_worst = lethe::testing::nan_max(step_worst, r);
    EXPECT_LE(r, kNormRel) << where << " parameter " << m.names[i];
  }
  return step_worst;
}

enum class Mode { bound_set, step_with };

class OptimParity : public ::testing::TestWithParam<std::tuple<int, Mode>> {};

TEST_P(OptimParity, MatchesTorchStepByStep) {
  const json& doc = fixture();
  const json& c = doc["cases"][std::get<0>(GetParam())];
  const Mode mode = std::get<1>(GetParam());
  SCOPED_TRACE(c["name"].get<std::string>());
  auto m = make_model(doc);
  ParameterStore& store = m->store;
  auto opt = make_optimizer(store, c);
  auto sched = make_schedule(c["schedule"], c["options"]["lr"]);
  const double clip = c["clip"];
  const int steps = doc["steps"];
  Tensor direction;
  double case_worst = 0;
  if (mode == Mode::step_with) {
    store.unbind_grads();  // the update comes only from the explicit buffer
    direction = Tensor::zeros({store.flat_grad_size()});
  }
  for (int step = 0; step < steps; ++step) {
    std::string where = c["name"].get<std::string>() + " step " + std::to_string(step);
    // Write this step's gradients into the set (or the direction buffer) at each parameter's
    // offset.
    NoGradGuard ng;
    Tensor target = mode == Mode::bound_set ? store.flat_grad(0) : direction;
    target.zero_();
    for (size_t i = 0; i < m->names.size(); ++i) {
      const auto& g = doc["grads"][step][i];
      Tensor region = target.slice(0, store.offset(m->names[i]),
                                   store.offset(m->names[i]) + static_cast<int64_t>(g.size()));
      region.copy_(Tensor::from_vector(as_floats(g), {static_cast<int64_t>(g.size())}));
    }
    if (clip > 0) {
      double norm = mode == Mode::bound_set ? clip_grad_norm(store, 0, clip)
                                            : clip_grad_norm(direction, clip);
      double expected = c["norms"][step];
      worst.clip_norm_rel = lethe::testing::nan_max(worst.clip_norm_rel, rel(norm, expected));
      ASSERT_LE(rel(norm, expected), 1e-6) << where << ": clip norm " << norm << " vs " << expected;
    }
    if (sched) opt->set_lr(sched->lr_at(step));
    double expected_lr = c["lrs"][step];
    worst.lr_rel = lethe::testing::nan_max(worst.lr_rel, rel(opt->lr(), expected_lr));
    ASSERT_LE(std::abs(opt->lr() - expected_lr), 1e-15 * std::abs(expected_lr)) << where;
    if (mode == Mode::bound_set) {
      opt->step();
    } else {
      opt->step_with(direction);
    }
    EXPECT_EQ(opt->step_count(), step + 1);
    case_worst = lethe::testing::nan_max(case_worst, compare_params(*m, c["params"][step], where));
    if (HasFailure()) return;
  }
  std::printf("[optim parity] %-28s %-9s max per-parameter relative error %.3g\n",
              c["name"].get<std::string>().c_str(), mode == Mode::bound_set ? "bound" : "step_with",
              case_worst);
  // The frozen parameter was never touched and never had a gradient.
  Tensor frozen = store.get("frozen");
  EXPECT_EQ(frozen.to_float_vector(), m->frozen_init);
  EXPECT_FALSE(frozen.requires_grad());
  EXPECT_FALSE(frozen.grad().defined());
}

std::string case_name(const ::testing::TestParamInfo<std::tuple<int, Mode>>& info) {
  std::string name = fixture()["cases"][std::get<0>(info.param)]["name"];
  return name + (std::get<1>(info.param) == Mode::bound_set ? "_bound" : "_step_with");
}

INSTANTIATE_TEST_SUITE_P(Torch, OptimParity,
                         ::testing::Combine(::testing::Range(0, 15),
                                            ::testing::Values(Mode::bound_set, Mode::step_with)),
                         case_name);

// The kernels alone on packed buffers (50 elements: no alignment gaps, so the SIMD body and the
// scalar tail both run), with the lr torch used at each step. Cases with clipping are skipped.
TEST(OptimParity, KernelsOnPackedBuffersMatchTorch) {
  const json& doc = fixture();
  std::vector<float> init;
  std::vector<size_t> sizes;
  for (const auto& p : doc["params"]) {
    std::vector<float> v = as_floats(p["init"]);
    sizes.push_back(v.size());
    init.insert(init.end(), v.begin(), v.end());
  }
  const int64_t n = static_cast<int64_t>(init.size());
  kernels::Backend& be = backend(Device::cpu());
  int cases = 0;
  for (const auto& c : doc["cases"]) {
    if (c["clip"].get<double>() > 0) continue;
    ++cases;
    const json& o = c["options"];
    std::vector<float> param = init, s1(init.size(), 0.f), s2(init.size(), 0.f);
    for (int step = 0; step < doc["steps"].get<int>(); ++step) {
      std::vector<float> g;
      for (const auto& part : doc["grads"][step]) {
        std::vector<float> v = as_floats(part);
        g.insert(g.end(), v.begin(), v.end());
      }
      const double lr = c["lrs"][step], t = step + 1;
      if (c["optimizer"] == "adamw") {
        const double b1 = o["beta1"], b2 = o["beta2"];
        be.adamw_step(n, param.data(), g.data(), s1.data(), s2.data(), lr, b1, b2, o["eps"],
                      o["weight_decay"], 1.0 - std::pow(b1, t), 1.0 - std::pow(b2, t));
      } else {
        be.sgd_step(n, param.data(), g.data(), s1.data(), lr, o["momentum"], o["dampening"],
                    o["weight_decay"], o["nesterov"], step == 0);
      }
      size_t at = 0;
      for (size_t i = 0; i < sizes.size(); ++i) {
        std::vector<float> ref = as_floats(c["params"][step][i]);
        double diff2 = 0, ref2 = 0;
        for (size_t e = 0; e < ref.size(); ++e) {
          double d = static_cast<double>(param[at + e]) - ref[e];
          diff2 += d * d;
          ref2 += static_cast<double>(ref[e]) * ref[e];
          ASSERT_LE(std::abs(d), kElemAtol + kElemRtol * std::abs(ref[e]))
              << c["name"] << " step " << step << " element " << at + e;
        }
        ASSERT_LE(std::sqrt(diff2 / ref2), kNormRel) << c["name"] << " step " << step;
        at += ref.size();
      }
    }
  }
  EXPECT_EQ(cases, 12);
}

TEST(OptimParity, FixtureHasAllCases) {
  EXPECT_EQ(fixture()["cases"].size(), 15u) << "update the Range() above with the fixture";
}

// transformers' schedules (through torch's LambdaLR): lr of steps 0..total+4, to the last bit
// in practice (same double operations in the same order).
TEST(LrScheduleParity, MatchesTransformers) {
  int checked = 0;
  for (const auto& s : fixture()["schedules"]) {
    LrSchedule sched(parse_lr_schedule_kind(s["kind"]), s["base_lr"], s["warmup"], s["total"]);
    const auto& lrs = s["lrs"];
    for (size_t step = 0; step < lrs.size(); ++step) {
      double expected = lrs[step];
      double ours = sched.lr_at(static_cast<int64_t>(step));
      worst.lr_rel = lethe::testing::nan_max(worst.lr_rel, rel(ours, expected));
      ASSERT_LE(std::abs(ours - expected), 1e-15 * std::abs(expected))
          << s["kind"] << " warmup " << s["warmup"] << " total " << s["total"] << " step " << step;
      ++checked;
    }
  }
  EXPECT_GT(checked, 1000);
}

}  // namespace
}  // namespace lethe
