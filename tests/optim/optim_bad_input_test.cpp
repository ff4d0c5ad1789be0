// Bad input to ParameterStore, optimizers, clipping and schedules: each a lethe::Error whose
// message names the parameter, the hyperparameter or the size that is wrong.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "engine/autograd.h"
#include "engine/lr_schedule.h"
#include "engine/optim.h"
#include "engine/parameters.h"
#include "tests/optim/test_util.h"

namespace lethe {
namespace {

using optim_test::expect_error;

ParameterStore small_store() {
  ParameterStore s;
  s.add("w", {3, 2});
  s.add("b", {2});
  s.allocate();
  return s;
}

TEST(ParameterStoreBadInput, Declaring) {
  ParameterStore s;
  s.add("w", {3, 2});
  expect_error([&] { s.add("w", {4}); }, {"duplicate", "'w'"});
  expect_error([&] { s.add("", {4}); }, {"empty"});
  expect_error([&] { s.add("neg", {3, -1}); }, {"negative", "'neg'"});
  expect_error([&] { s.get("nope"); }, {"unknown parameter", "'nope'"});
  expect_error([&] { s.set_trainable("nope", false); }, {"unknown parameter", "'nope'"});
  expect_error([&] { s.flat_weights(); }, {"allocate"});
  expect_error([&] { s.flat_grad(0); }, {"allocate"});
  expect_error([&] { s.add_grad_set(); }, {"allocate"});
  ParameterStore empty;
  expect_error([&] { empty.allocate(); }, {"no parameters"});
}

TEST(ParameterStoreBadInput, AfterAllocate) {
  ParameterStore s = small_store();
  expect_error([&] { s.add("late", {2}); }, {"after allocate", "'late'"});
  expect_error([&] { s.set_trainable("w", false); }, {"after allocate", "'w'"});
  expect_error([&] { s.allocate(); }, {"already allocated"});
  expect_error([&] { s.bind_grads(3); }, {"gradient set 3", "1 sets"});
  expect_error([&] { s.bind_grads(-1); }, {"gradient set -1"});
  expect_error([&] { s.flat_grad(1); }, {"gradient set 1"});
  expect_error([&] { s.zero_grads(2); }, {"gradient set 2"});
  expect_error([&] { s.grad_norm(7); }, {"gradient set 7"});
  expect_error([&] { s.gram({0, 4}); }, {"gradient set 4"});
  expect_error([&] { s.gram({}); }, {"0 gradient sets"});
  expect_error([&] { s.gram(std::vector<int>(17, 0)); }, {"17 gradient sets"});
  expect_error([&] { s.grad_view(0, "zz"); }, {"unknown parameter", "'zz'"});
  expect_error([&] { s.offset("zz"); }, {"unknown parameter", "'zz'"});
  ParameterStore moved = std::move(s);
  expect_error([&] { s.names(); }, {"moved-from"});
}

TEST(ParameterStoreBadInput, FrozenHasNoGradView) {
  ParameterStore s;
  s.add("w", {2});
  s.add("f", {2}, false);
  s.allocate();
  expect_error([&] { s.grad_view(0, "f"); }, {"frozen", "'f'"});
}

TEST(OptimizerBadInput, StoreState) {
  ParameterStore unallocated;
  unallocated.add("w", {2});
  expect_error([&] { AdamW a(unallocated); }, {"not allocated"});
  ParameterStore all_frozen;
  all_frozen.add("w", {2}, false);
  all_frozen.allocate();
  expect_error([&] { AdamW a(all_frozen); }, {"no trainable parameters"});
}

TEST(OptimizerBadInput, StepWithoutGradientsOrWrongDirection) {
  ParameterStore s = small_store();
  AdamW adam(s);
  s.unbind_grads();
  expect_error([&] { adam.step(); }, {"AdamW.step()", "no gradient set is bound"});
  EXPECT_EQ(adam.step_count(), 0);
  const int64_t n = s.flat_grad_size();
  expect_error([&] { adam.step_with(Tensor::zeros({n + 1})); },
               {"AdamW.step_with", std::to_string(n + 1).c_str(), "need 32"});
  expect_error([&] { adam.step_with(Tensor::zeros({3})); }, {"has 3 elements"});
  expect_error([&] { adam.step_with(Tensor::zeros({n}, DType::f64)); }, {"must be f32"});
  expect_error([&] { adam.step_with(Tensor()); }, {"undefined"});
  expect_error([&] { adam.step_with(Tensor::zeros({n, 2}).select(1, 0)); }, {"contiguous"});
  EXPECT_EQ(adam.step_count(), 0) << "a refused step must not advance the step count";
  SgdOptions o;
  o.lr = 0.1;
  SGD sgd(s, o);
  expect_error([&] { sgd.step(); }, {"SGD.step()", "no gradient set is bound"});
  sgd.zero_grad();  // nothing bound: a no-op, not an error
}

TEST(OptimizerBadInput, AdamWHyperparameters) {
  ParameterStore s = small_store();
  auto with = [&](auto edit) {
    AdamWOptions o;
    edit(o);
    AdamW a(s, o);
  };
  expect_error([&] { with([](AdamWOptions& o) { o.lr = -1e-3; }); }, {"learning rate", "-0.001"});
  expect_error([&] { with([](AdamWOptions& o) { o.lr = std::nan(""); }); }, {"learning rate"});
  expect_error([&] { with([](AdamWOptions& o) { o.beta1 = 1.0; }); }, {"beta1", "[0, 1)"});
  expect_error([&] { with([](AdamWOptions& o) { o.beta1 = -0.1; }); }, {"beta1"});
  expect_error([&] { with([](AdamWOptions& o) { o.beta2 = 1.5; }); }, {"beta2", "1.5"});
  expect_error([&] { with([](AdamWOptions& o) { o.beta2 = std::nan(""); }); }, {"beta2"});
  expect_error([&] { with([](AdamWOptions& o) { o.eps = 0.0; }); }, {"eps"});
  expect_error([&] { with([](AdamWOptions& o) { o.eps = -1e-8; }); }, {"eps"});
  expect_error([&] { with([](AdamWOptions& o) { o.weight_decay = -0.01; }); }, {"weight_decay"});
  AdamW ok(s);
  expect_error([&] { ok.set_lr(-1.0); }, {"AdamW", "learning rate"});
  expect_error([&] { ok.set_lr(std::numeric_limits<double>::infinity()); }, {"learning rate"});
  expect_error([&] { ok.set_step_count(-2); }, {"negative step count"});
}

TEST(OptimizerBadInput, SgdHyperparameters) {
  ParameterStore s = small_store();
  auto with = [&](auto edit) {
    SgdOptions o;
    o.lr = 0.1;
    edit(o);
    SGD sgd(s, o);
  };
  expect_error([&] { with([](SgdOptions& o) { o.lr = -0.1; }); }, {"SGD", "learning rate"});
  expect_error([&] { with([](SgdOptions& o) { o.momentum = -0.9; }); }, {"momentum"});
  expect_error([&] { with([](SgdOptions& o) { o.weight_decay = -1; }); }, {"weight_decay"});
  expect_error([&] { with([](SgdOptions& o) { o.nesterov = true; }); }, {"nesterov"});
  expect_error(
      [&] {
        with([](SgdOptions& o) {
          o.nesterov = true;
          o.momentum = 0.9;
          o.dampening = 0.1;
        });
      },
      {"nesterov", "dampening"});
}

TEST(ClipBadInput, Arguments) {
  ParameterStore s = small_store();
  expect_error([&] { clip_grad_norm(s, 2, 1.0); }, {"gradient set 2"});
  expect_error([&] { clip_grad_norm(s, 0, std::nan("")); }, {"max_norm"});
  Tensor d = Tensor::zeros({4}, DType::f64);
  expect_error([&] { clip_grad_norm(d, 1.0); }, {"f32"});
}

TEST(LrScheduleBadInput, Arguments) {
  expect_error([] { parse_lr_schedule_kind("linearr"); }, {"'linearr'", "cosine"});
  expect_error([] { LrSchedule(LrScheduleKind::linear, 1e-3, -1, 10); }, {"warmup_steps"});
  expect_error([] { LrSchedule(LrScheduleKind::linear, 1e-3, 0, 0); }, {"total_steps"});
  expect_error([] { LrSchedule(LrScheduleKind::cosine, 1e-3, 11, 10); }, {"exceeds", "10"});
  expect_error([] { LrSchedule(LrScheduleKind::constant, -1e-3); }, {"base learning rate"});
  expect_error([] { LrSchedule(LrScheduleKind::cosine, 1e-3, 0, 10, 0.0); }, {"num_cycles"});
  LrSchedule ok(LrScheduleKind::linear, 1e-3, 2, 10);
  expect_error([&] { ok.lr_at(-1); }, {"negative step"});
  EXPECT_EQ(parse_lr_schedule_kind("cosine"), LrScheduleKind::cosine);
  EXPECT_STREQ(lr_schedule_kind_name(LrScheduleKind::constant_with_warmup), "constant_with_warmup");
}

}  // namespace
}  // namespace lethe
