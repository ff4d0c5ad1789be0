// ParameterStore: views share the flat buffers, backward accumulates into the bound gradient set,
// sets can be switched, grad_norm / gram against host dot products, frozen parameters get no grad.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/parameters.h"

namespace lethe {
namespace {

constexpr int64_t kAlign = ParameterStore::kParameterAlignment;

std::vector<float> iota_values(int64_t n, float start, float step) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = start + step * static_cast<float>(i);
  return v;
}

double host_dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

// A tiny model: y = (x W + b) * s, loss = sum(y^2), with s frozen.
struct Tiny {
  ParameterStore store;
  Tensor w, b, s;
  std::vector<float> x = {0.5f,  -1.0f, 2.0f, 1.5f, 0.25f, -0.75f,
                          -2.0f, 1.0f,  0.0f, 0.3f, 0.6f,  -0.9f};
  Tiny() {
    s = store.add("s", {2}, /*trainable=*/false);  // declared first, laid out last
    w = store.add("w", {3, 2});
    b = store.add("b", {2});
    store.allocate();
    NoGradGuard ng;
    w.copy_(Tensor::from_vector(std::vector<float>{0.1f, -0.2f, 0.3f, 0.4f, -0.5f, 0.6f}, {3, 2}));
    b.copy_(Tensor::from_vector(std::vector<float>{0.05f, -0.1f}, {2}));
    s.copy_(Tensor::from_vector(std::vector<float>{1.5f, -0.5f}, {2}));
  }
  Tensor loss() const {
    Tensor xt = Tensor::from_vector(x, {4, 3});
    Tensor y = mul(add(matmul(xt, w), b), s);
    return sum(square(y));
  }
  // Host gradients of loss(): dW[k][j] = sum_i x[i][k] 2 y[i][j] s[j], db[j] = sum_i 2 y[i][j]
  // s[j].
  void expected_grads(std::vector<float>& dw, std::vector<float>& db) const {
    std::vector<float> wv = w.to_float_vector(), bv = b.to_float_vector(), sv = s.to_float_vector();
    dw.assign(6, 0.f);
    db.assign(2, 0.f);
    for (int i = 0; i < 4; ++i) {
      for (int j = 0; j < 2; ++j) {
        double z = bv[j];
        for (int k = 0; k < 3; ++k) z += static_cast<double>(x[i * 3 + k]) * wv[k * 2 + j];
        double dy = 2.0 * z * sv[j] * sv[j];
        db[j] += static_cast<float>(dy);
        for (int k = 0; k < 3; ++k) dw[k * 2 + j] += static_cast<float>(x[i * 3 + k] * dy);
      }
    }
  }
};

void expect_near_vec(const std::vector<float>& ours, const std::vector<float>& ref, double scale,
                     const char* what) {
  ASSERT_EQ(ours.size(), ref.size()) << what;
  for (size_t i = 0; i < ref.size(); ++i) {
    EXPECT_NEAR(ours[i], scale * ref[i], 1e-5 * (1 + std::abs(scale * ref[i])))
        << what << "[" << i << "]";
  }
}

TEST(ParameterStore, LayoutPutsTrainableFirstAndAligns) {
  ParameterStore store;
  store.add("frozen_first", {3}, false);
  store.add("a", {7, 3});
  store.add("b", {5});
  store.add("c", {2, 3, 4});
  store.add("frozen_last", {4, 4}, false);
  store.allocate();
  EXPECT_EQ(store.names(),
            (std::vector<std::string>{"frozen_first", "a", "b", "c", "frozen_last"}));
  EXPECT_EQ(store.numel(), 3 + 21 + 5 + 24 + 16);
  EXPECT_EQ(store.trainable_numel(), 21 + 5 + 24);
  EXPECT_EQ(store.offset("a"), 0);
  EXPECT_EQ(store.offset("b"), 32);
  EXPECT_EQ(store.offset("c"), 48);
  EXPECT_EQ(store.flat_grad_size(), 80);  // 48 + 24 rounded up to 16
  EXPECT_EQ(store.offset("frozen_first"), 80);
  EXPECT_EQ(store.offset("frozen_last"), 96);
  EXPECT_EQ(store.flat_size(), 112);
  for (const auto& n : store.names()) EXPECT_EQ(store.offset(n) % kAlign, 0) << n;
  EXPECT_EQ(store.flat_weights().numel(), store.flat_size());
  EXPECT_EQ(store.trainable_weights().numel(), store.flat_grad_size());
  EXPECT_EQ(store.trainable_weights().data_ptr(), store.flat_weights().data_ptr());
  EXPECT_EQ(store.flat_grad(0).numel(), store.flat_grad_size());
  EXPECT_TRUE(store.trainable("a"));
  EXPECT_FALSE(store.trainable("frozen_last"));
  EXPECT_EQ(store.bound_grad_set(), 0);
  EXPECT_EQ(store.num_grad_sets(), 1);
}

TEST(ParameterStore, ViewsShareTheFlatBuffer) {
  ParameterStore store;
  Tensor a = store.add("a", {7, 3});
  {
    NoGradGuard ng;
    a.copy_(Tensor::from_vector(iota_values(21, 1.f, 1.f), {7, 3}));  // before allocate
  }
  Tensor b = store.add("b", {2, 3, 4});
  store.allocate();
  // The handles add() returned are the stored parameters, now views into the flat buffer.
  EXPECT_TRUE(store.get("a").same(a));
  EXPECT_TRUE(a.requires_grad());
  EXPECT_TRUE(a.is_leaf());
  EXPECT_EQ(a.shape(), (Shape{7, 3}));
  const float* flat = store.flat_weights().data<float>();
  EXPECT_EQ(a.data<float>(), flat + store.offset("a"));
  EXPECT_EQ(b.data<float>(), flat + store.offset("b"));
  EXPECT_EQ(a.to_float_vector(), iota_values(21, 1.f, 1.f));  // value moved into the buffer
  EXPECT_EQ(b.to_float_vector(), std::vector<float>(24, 0.f));

  // Writing through the flat buffer changes the parameters (and the gaps are plain zeros).
  NoGradGuard ng;
  std::vector<float> all = iota_values(store.flat_size(), -3.f, 0.5f);
  store.flat_weights().copy_(Tensor::from_vector(all, {store.flat_size()}));
  std::vector<float> expect_b(all.begin() + store.offset("b"),
                              all.begin() + store.offset("b") + 24);
  EXPECT_EQ(b.to_float_vector(), expect_b);
  // Writing through a parameter changes the flat buffer.
  a.fill_(9.f);
  std::vector<float> now = store.flat_weights().to_float_vector();
  for (int64_t i = 0; i < 21; ++i) EXPECT_EQ(now[store.offset("a") + i], 9.f);
  EXPECT_EQ(now[21], all[21]);  // the first gap element is untouched
}

TEST(ParameterStore, BackwardAccumulatesIntoBoundSetAndSetsSwitch) {
  Tiny m;
  ParameterStore& store = m.store;
  std::vector<float> dw, db;
  m.expected_grads(dw, db);
  // Gradients are views into set 0 before anything runs.
  EXPECT_EQ(m.w.grad().data<float>(), store.flat_grad(0).data<float>() + store.offset("w"));
  EXPECT_FALSE(m.s.grad().defined());
  EXPECT_FALSE(m.s.requires_grad());

  m.loss().backward();
  expect_near_vec(store.grad_view(0, "w").to_float_vector(), dw, 1.0, "set0 w");
  expect_near_vec(store.grad_view(0, "b").to_float_vector(), db, 1.0, "set0 b");
  EXPECT_EQ(m.w.grad().data<float>(), store.flat_grad(0).data<float>() + store.offset("w"));
  EXPECT_FALSE(m.s.grad().defined()) << "frozen parameter received a gradient";

  m.loss().backward();  // accumulates in place
  expect_near_vec(store.grad_view(0, "w").to_float_vector(), dw, 2.0, "set0 w x2");
  expect_near_vec(store.grad_view(0, "b").to_float_vector(), db, 2.0, "set0 b x2");

  // A second set: backward now fills it and leaves set 0 alone.
  int set1 = store.add_grad_set();
  EXPECT_EQ(set1, 1);
  store.bind_grads(set1);
  EXPECT_EQ(store.bound_grad_set(), 1);
  EXPECT_EQ(m.b.grad().data<float>(), store.flat_grad(1).data<float>() + store.offset("b"));
  m.loss().backward();
  expect_near_vec(store.grad_view(1, "w").to_float_vector(), dw, 1.0, "set1 w");
  expect_near_vec(store.grad_view(1, "b").to_float_vector(), db, 1.0, "set1 b");
  expect_near_vec(store.grad_view(0, "w").to_float_vector(), dw, 2.0, "set0 w kept");

  // grad_norm and gram against host dot products of the flat buffers.
  std::vector<float> g0 = store.flat_grad(0).to_float_vector();
  std::vector<float> g1 = store.flat_grad(1).to_float_vector();
  EXPECT_NEAR(store.grad_norm(0), std::sqrt(host_dot(g0, g0)), 1e-9 * std::sqrt(host_dot(g0, g0)));
  EXPECT_NEAR(store.grad_norm(1), std::sqrt(host_dot(g1, g1)), 1e-9 * std::sqrt(host_dot(g1, g1)));
  std::vector<double> gram = store.gram({0, 1});
  ASSERT_EQ(gram.size(), 4u);
  double ref[4] = {host_dot(g0, g0), host_dot(g0, g1), host_dot(g1, g0), host_dot(g1, g1)};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(gram[i], ref[i], 1e-9 * std::abs(ref[i])) << i;
  EXPECT_NEAR(gram[1], 2.0 * gram[3], 1e-4 * gram[3]);  // set 0 holds twice set 1
  std::vector<double> g3 = store.gram({1, 0, 1});
  EXPECT_NEAR(g3[0 * 3 + 2], ref[3], 1e-9 * ref[3]);
  EXPECT_NEAR(g3[1 * 3 + 2], ref[1], 1e-9 * ref[1]);

  // Gaps of the trainable region stay zero.
  for (int64_t i = 6; i < store.offset("b"); ++i) EXPECT_EQ(g0[static_cast<size_t>(i)], 0.f);

  store.zero_grads(0);
  EXPECT_EQ(store.grad_norm(0), 0.0);
  EXPECT_GT(store.grad_norm(1), 0.0);

  // Unbinding: backward creates fresh gradients that live outside every set.
  store.unbind_grads();
  EXPECT_EQ(store.bound_grad_set(), -1);
  EXPECT_FALSE(m.w.grad().defined());
  m.loss().backward();
  ASSERT_TRUE(m.w.grad().defined());
  expect_near_vec(m.w.grad().to_float_vector(), dw, 1.0, "unbound w");
  EXPECT_EQ(store.grad_norm(0), 0.0);
  store.bind_grads(0);
  EXPECT_EQ(m.w.grad().data<float>(), store.flat_grad(0).data<float>() + store.offset("w"));
}

TEST(ParameterStore, ClipScalesOnlyAboveMaxNorm) {
  Tiny m;
  m.loss().backward();
  std::vector<float> before = m.store.flat_grad(0).to_float_vector();
  double norm = std::sqrt(host_dot(before, before));
  ASSERT_GT(norm, 1.0);
  EXPECT_NEAR(clip_grad_norm(m.store, 0, 0.0), norm, 1e-9 * norm);  // measure only
  EXPECT_EQ(m.store.flat_grad(0).to_float_vector(), before);
  EXPECT_NEAR(clip_grad_norm(m.store, 0, 2.0 * norm), norm, 1e-9 * norm);  // below: unchanged
  EXPECT_EQ(m.store.flat_grad(0).to_float_vector(), before);
  EXPECT_NEAR(clip_grad_norm(m.store, 0, 1.0), norm, 1e-9 * norm);
  EXPECT_NEAR(m.store.grad_norm(0), norm / (norm + 1e-6), 1e-6);
  std::vector<float> after = m.store.flat_grad(0).to_float_vector();
  for (size_t i = 0; i < after.size(); ++i) {
    EXPECT_NEAR(after[i], before[i] / (norm + 1e-6), 1e-7 * (1 + std::abs(before[i])));
  }
}

TEST(ParameterStore, OptimizerStepsOnlyTrainableAndSurvivesMove) {
  auto m = std::make_unique<Tiny>();
  SgdOptions o;
  o.lr = 0.5;
  SGD sgd(m->store, o);
  ParameterStore moved = std::move(m->store);  // the optimizer shares the internals
  std::vector<float> w0 = m->w.to_float_vector(), s0 = m->s.to_float_vector();
  m->loss().backward();
  std::vector<float> gw = moved.grad_view(0, "w").to_float_vector();
  sgd.step();
  std::vector<float> w1 = m->w.to_float_vector();
  for (size_t i = 0; i < w0.size(); ++i) EXPECT_FLOAT_EQ(w1[i], w0[i] - 0.5f * gw[i]);
  EXPECT_EQ(m->s.to_float_vector(), s0);
  sgd.zero_grad();
  EXPECT_EQ(moved.grad_norm(0), 0.0);
  EXPECT_TRUE(sgd.state_buffers().empty());
  AdamW adam(moved);
  ASSERT_EQ(adam.state_buffers().size(), 2u);
  EXPECT_EQ(adam.state_buffers()[0].second.numel(), moved.flat_grad_size());
}

TEST(ParameterStore, MultiObjectiveCombinedDirection) {
  // Two objectives into two sets, combined into one direction, stepped with step_with.
  Tiny m;
  ParameterStore& store = m.store;
  int retain = store.add_grad_set();
  m.loss().backward();  // set 0
  store.bind_grads(retain);
  {
    Tensor l = scale(m.loss(), -0.5);
    l.backward();  // set 1 = -0.5 * set 0
  }
  std::vector<double> g = store.gram({0, retain});
  EXPECT_NEAR(g[1], -0.5 * g[0], 1e-6 * g[0]);
  Tensor dir = Tensor::zeros({store.flat_grad_size()});
  NoGradGuard ng;
  dir.copy_(store.flat_grad(0));
  axpy_(dir, 1.0, store.flat_grad(retain));  // dir = 0.5 * g0
  SgdOptions o;
  o.lr = 1.0;
  SGD sgd(store, o);
  std::vector<float> b0 = m.b.to_float_vector(), gb = store.grad_view(0, "b").to_float_vector();
  sgd.step_with(dir);
  std::vector<float> b1 = m.b.to_float_vector();
  for (size_t i = 0; i < b0.size(); ++i) EXPECT_NEAR(b1[i], b0[i] - 0.5f * gb[i], 1e-6);
}

}  // namespace
}  // namespace lethe
