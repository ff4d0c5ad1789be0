// Values and gradients of embedding, cross_entropy, token_logprobs and kl_div against PyTorch
// (tests/unit/fixtures/losses.json, written by tools/fixtures/make_loss_fixtures.py), closed-form
// edge cases, and bad-input errors.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "tests/common/paths.h"

namespace lethe {
namespace {

using nlohmann::json;

const json& fixtures() {
  static const json j = [] {
    std::ifstream f(lethe::testing::source_dir() + "/tests/unit/fixtures/losses.json");
    if (!f) throw std::runtime_error("cannot open tests/unit/fixtures/losses.json");
    return json::parse(f);
  }();
  return j;
}

// The cases of one fixture section; exactly `expected` of them (a truncated or emptied fixture
// fails instead of comparing nothing). Update with tools/fixtures/make_loss_fixtures.py.
const json& cases_of(const char* section, size_t expected) {
  const json& cases = fixtures().at(section);
  EXPECT_EQ(cases.size(), expected) << "tests/unit/fixtures/losses.json section " << section;
  if (cases.size() != expected)
    throw std::runtime_error(std::string("bad fixture section ") + section);
  return cases;
}

DType dtype_of(const json& c) {
  return c.at("dtype") == "f64" ? DType::f64 : DType::f32;
}
double rtol_of(DType dt) {
  return dt == DType::f64 ? 1e-6 : 1e-5;
}

Shape shape_of(const json& j) {
  return j.get<Shape>();
}

Tensor float_tensor(const json& values, const json& shape, DType dt) {
  return Tensor::from_vector(values.get<std::vector<double>>(), shape_of(shape), dt);
}

// Relative comparison; elements much smaller than the array's largest are compared against a
// floor of 1e-2 × that maximum (a pure relative test is meaningless for values near 0).
void expect_close(const std::vector<double>& got, const json& expected_json, double rtol,
                  const std::string& what) {
  std::vector<double> expected = expected_json.get<std::vector<double>>();
  ASSERT_EQ(got.size(), expected.size()) << what;
  double maxabs = 0;
  for (double e : expected) maxabs = std::max(maxabs, std::abs(e));
  for (size_t i = 0; i < got.size(); ++i) {
    double tol = rtol * std::max(std::abs(expected[i]), 1e-2 * maxabs);
    if (maxabs == 0) tol = 1e-12;
    EXPECT_NEAR(got[i], expected[i], tol) << what << " element " << i;
  }
}

CrossEntropyOptions options_of(const json& c) {
  CrossEntropyOptions o;
  o.ignore_index = c.at("ignore_index").get<int64_t>();
  o.mode = c.at("mode") == "nll" ? LossMode::nll : LossMode::unlikelihood;
  o.unlikelihood_c = c.at("c").get<double>();
  const std::string r = c.at("reduction");
  o.reduction = r == "none"          ? Reduction::none
                : r == "token_mean"  ? Reduction::token_mean
                : r == "sample_mean" ? Reduction::sample_mean
                                     : Reduction::sequence_sum;
  if (!c.at("weights").is_null()) {
    Shape lead = shape_of(c.at("logits_shape"));
    lead.pop_back();
    o.weights = Tensor::from_vector(c.at("weights").get<std::vector<double>>(), lead, DType::f32);
  }
  return o;
}

Tensor targets_of(const json& c) {
  Shape lead = shape_of(c.at("logits_shape"));
  lead.pop_back();
  return Tensor::from_vector(c.at("targets").get<std::vector<int64_t>>(), lead, DType::i64);
}

// Checks the op's output and the gradient of sum(out * seed) for one fixture case.
void check_output_and_backward(const Tensor& out, const json& c, double rtol,
                               const std::string& name) {
  EXPECT_EQ(out.shape(), shape_of(c.at("out_shape"))) << name;
  expect_close(out.to_double_vector(), c.at("expected"), rtol, name + " output");
  Tensor seed = float_tensor(c.at("seed"), c.at("out_shape"), out.dtype());
  out.backward(seed);
}

TEST(LossFixtures, CrossEntropyMatchesTorch) {
  for (const json& c : cases_of("cross_entropy", 32)) {
    std::string name = c.at("name");
    SCOPED_TRACE(name);
    DType dt = dtype_of(c);
    Tensor x = float_tensor(c.at("logits"), c.at("logits_shape"), dt).set_requires_grad(true);
    Tensor out = cross_entropy(x, targets_of(c), options_of(c));
    check_output_and_backward(out, c, rtol_of(dt), name);
    ASSERT_TRUE(x.grad().defined()) << name;
    expect_close(x.grad().to_double_vector(), c.at("grad"), rtol_of(dt), name + " grad");
  }
}

TEST(LossFixtures, TokenLogprobsMatchTorch) {
  for (const json& c : cases_of("token_logprobs", 3)) {
    std::string name = c.at("name");
    SCOPED_TRACE(name);
    DType dt = dtype_of(c);
    Tensor x = float_tensor(c.at("logits"), c.at("logits_shape"), dt).set_requires_grad(true);
    Tensor out = token_logprobs(x, targets_of(c), c.at("ignore_index").get<int64_t>());
    check_output_and_backward(out, c, rtol_of(dt), name);
    expect_close(x.grad().to_double_vector(), c.at("grad"), rtol_of(dt), name + " grad");
  }
}

TEST(LossFixtures, KlDivMatchesTorch) {
  for (const json& c : cases_of("kl_div", 3)) {
    std::string name = c.at("name");
    SCOPED_TRACE(name);
    DType dt = dtype_of(c);
    Tensor ref = float_tensor(c.at("ref"), c.at("shape"), dt).set_requires_grad(true);
    Tensor x = float_tensor(c.at("logits"), c.at("shape"), dt).set_requires_grad(true);
    Tensor out = kl_div(ref, x);
    check_output_and_backward(out, c, rtol_of(dt), name);
    expect_close(x.grad().to_double_vector(), c.at("grad_logits"), rtol_of(dt), name + " dlogits");
    expect_close(ref.grad().to_double_vector(), c.at("grad_ref"), rtol_of(dt), name + " dref");
  }
}

TEST(LossFixtures, EmbeddingMatchesTorch) {
  for (const json& c : cases_of("embedding", 3)) {
    std::string name = c.at("name");
    SCOPED_TRACE(name);
    DType dt = dtype_of(c);
    Tensor table = float_tensor(c.at("table"), c.at("table_shape"), dt).set_requires_grad(true);
    Tensor ids = Tensor::from_vector(c.at("ids").get<std::vector<int64_t>>(),
                                     shape_of(c.at("ids_shape")), DType::i64);
    std::optional<int64_t> pad;
    if (!c.at("padding_idx").is_null()) pad = c.at("padding_idx").get<int64_t>();
    Tensor out = embedding(table, ids, pad);
    check_output_and_backward(out, c, rtol_of(dt), name);
    expect_close(table.grad().to_double_vector(), c.at("grad"), rtol_of(dt), name + " grad");
    if (pad) {  // the padding row's gradient is exactly zero
      int64_t rows = table.shape()[0], dim = table.shape()[1];
      int64_t p = *pad < 0 ? *pad + rows : *pad;
      auto g = table.grad().to_double_vector();
      for (int64_t e = 0; e < dim; ++e) EXPECT_EQ(g[p * dim + e], 0.0) << name;
    }
  }
}

// ---- closed-form edge cases ------------------------------------------------------------------

TEST(LossEdges, TokenMeanWithNoValidTokenIsZero) {
  // Documented choice (docs/ops.md): 0 with a zero gradient, where PyTorch returns nan.
  Tensor x = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3}, DType::f64)
                 .set_requires_grad(true);
  Tensor t = Tensor::from_vector(std::vector<int64_t>{-100, -100}, {2}, DType::i64);
  Tensor loss = cross_entropy(x, t);
  EXPECT_EQ(loss.item(), 0.0);
  loss.backward();
  for (double g : x.grad().to_double_vector()) EXPECT_EQ(g, 0.0);
  CrossEntropyOptions o;
  o.reduction = Reduction::sample_mean;
  EXPECT_EQ(cross_entropy(x.detach().view({1, 2, 3}), t.view({1, 2}), o).item(), 0.0);
}

TEST(LossEdges, HugeLogitsStayFinite) {
  // nll: logits [1000, 0, 0], target 1 → lse = 1000 + log(1 + 2e^-1000) = 1000 (in f64).
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x =
        Tensor::from_vector(std::vector<double>{1000, 0, 0}, {1, 3}, dt).set_requires_grad(true);
    Tensor t = Tensor::from_vector(std::vector<int64_t>{1}, {1}, DType::i64);
    Tensor loss = cross_entropy(x, t);
    EXPECT_NEAR(loss.item(), 1000.0, 1e-3);
    loss.backward();
    auto g = x.grad().to_double_vector();  // softmax − onehot = [1, −1, 0]
    EXPECT_NEAR(g[0], 1.0, 1e-6);
    EXPECT_NEAR(g[1], -1.0, 1e-6);
    EXPECT_NEAR(g[2], 0.0, 1e-6);
  }
}

TEST(LossEdges, UnlikelihoodC1WithCertainTargetIsFloored) {
  // c = 1, p_t = 1 − 2e^-1000 (== 1 in any float): 1 − p_t is floored at 1e-30, so the loss is
  // −log(1e-30) = 69.0776 instead of +inf. The gradient is the exact limit of
  // c·p_t·(δ_jt − p_j)/(1 − c·p_t): target p_t = 1, others −p_j/(1 − p_t) = −1/2 each.
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x =
        Tensor::from_vector(std::vector<double>{1000, 0, 0}, {1, 3}, dt).set_requires_grad(true);
    Tensor t = Tensor::from_vector(std::vector<int64_t>{0}, {1}, DType::i64);
    CrossEntropyOptions o;
    o.mode = LossMode::unlikelihood;
    o.unlikelihood_c = 1.0;
    Tensor loss = cross_entropy(x, t, o);
    EXPECT_NEAR(loss.item(), -std::log(1e-30), 1e-4);
    loss.backward();
    auto g = x.grad().to_double_vector();
    EXPECT_NEAR(g[0], 1.0, 1e-6);
    EXPECT_NEAR(g[1], -0.5, 1e-6);
    EXPECT_NEAR(g[2], -0.5, 1e-6);
  }
}

TEST(LossEdges, UnlikelihoodNearCertainMatchesClosedForm) {
  // logits [20, 0, 0] target 0, c = 1: 1 − p_t = 2/(e^20 + 2), exactly representable without
  // cancellation; loss = log(e^20 + 2) − log 2.
  Tensor x = Tensor::from_vector(std::vector<double>{20, 0, 0}, {1, 3}, DType::f32);
  Tensor t = Tensor::from_vector(std::vector<int64_t>{0}, {1}, DType::i64);
  CrossEntropyOptions o;
  o.mode = LossMode::unlikelihood;
  o.unlikelihood_c = 1.0;
  double expected = std::log(std::exp(20.0) + 2.0) - std::log(2.0);
  EXPECT_NEAR(cross_entropy(x, t, o).item(), expected, 1e-5 * expected);
}

TEST(LossEdges, KlOfIdenticalDistributionsIsZero) {
  Tensor a = Tensor::from_vector(std::vector<double>{0.3, -1.2, 2.0, 0.0}, {1, 4}, DType::f64);
  Tensor b = add_scalar(a, 7.5);  // a shift leaves the softmax unchanged
  EXPECT_NEAR(kl_div(a, b).item(), 0.0, 1e-14);
}

// ---- bad input -------------------------------------------------------------------------------

// Expects lethe::Error whose message contains every fragment.
template <typename Fn>
void expect_error(Fn&& fn, std::initializer_list<std::string> fragments) {
  try {
    fn();
    ADD_FAILURE() << "no lethe::Error thrown";
  } catch (const Error& e) {
    std::string msg = e.what();
    for (const std::string& f : fragments)
      EXPECT_NE(msg.find(f), std::string::npos)
          << "message \"" << msg << "\" lacks \"" << f << "\"";
  }
}

Tensor logits23() {
  return Tensor::zeros({2, 3, 5}, DType::f32);
}
Tensor targets23() {
  return Tensor::from_vector(std::vector<int64_t>{0, 1, 2, 3, 4, -100}, {2, 3}, DType::i64);
}

TEST(LossErrors, CrossEntropyBadInputs) {
  expect_error(
      [] {
        cross_entropy(logits23(), Tensor::zeros({2, 4}, DType::i64));
      },
      {"cross_entropy", "[2, 4]"});
  expect_error(
      [] {
        cross_entropy(logits23(), Tensor::zeros({2, 3}, DType::f32));
      },
      {"cross_entropy", "i64"});
  expect_error(
      [] {
        cross_entropy(Tensor::zeros({2, 3, 5}, DType::i64), targets23());
      },
      {"cross_entropy", "dtype"});
  expect_error(
      [] {
        CrossEntropyOptions o;
        o.weights = Tensor::ones({3, 2}, DType::f32);
        cross_entropy(logits23(), targets23(), o);
      },
      {"cross_entropy", "weights"});
  expect_error(
      [] {
        CrossEntropyOptions o;
        o.weights = Tensor::ones({2, 3}, DType::f64);
        cross_entropy(logits23(), targets23(), o);
      },
      {"cross_entropy", "weights", "f32"});
  for (double c : {0.0, -0.5, 1.5, std::nan("")}) {
    expect_error(
        [c] {
          CrossEntropyOptions o;
          o.mode = LossMode::unlikelihood;
          o.unlikelihood_c = c;
          cross_entropy(logits23(), targets23(), o);
        },
        {"cross_entropy", "unlikelihood_c"});
  }
  expect_error(
      [] {
        auto t = Tensor::from_vector(std::vector<int64_t>{0, 1, 7, 3, 4, -100}, {2, 3}, DType::i64);
        cross_entropy(logits23(), t);
      },
      {"cross_entropy", "target 7", "[0, 2]", "[0, 5)"});
  expect_error(
      [] {
        auto t = Tensor::from_vector(std::vector<int64_t>{0, 1, 2, -1, 4, 0}, {2, 3}, DType::i64);
        cross_entropy(logits23(), t);
      },
      {"cross_entropy", "target -1", "[1, 0]"});
  expect_error(
      [] {
        CrossEntropyOptions o;
        o.reduction = Reduction::sample_mean;
        cross_entropy(Tensor::zeros({4, 5}), Tensor::zeros({4}, DType::i64), o);
      },
      {"cross_entropy", "sample_mean", "2-D"});
  expect_error(
      [] {
        CrossEntropyOptions o;
        o.reduction = Reduction::sequence_sum;
        cross_entropy(Tensor::zeros({4, 5}), Tensor::zeros({4}, DType::i64), o);
      },
      {"cross_entropy", "sequence_sum"});
  expect_error([] { cross_entropy(Tensor(), targets23()); }, {"cross_entropy", "logits"});
  expect_error([] { cross_entropy(logits23(), Tensor()); }, {"cross_entropy", "targets"});
}

TEST(LossErrors, TokenLogprobsAndKlBadInputs) {
  expect_error(
      [] {
        token_logprobs(logits23(), Tensor::zeros({3, 2}, DType::i64));
      },
      {"token_logprobs", "[3, 2]"});
  expect_error(
      [] {
        auto t = Tensor::from_vector(std::vector<int64_t>{0, 1, 2, 3, 5, 0}, {2, 3}, DType::i64);
        token_logprobs(logits23(), t);
      },
      {"token_logprobs", "target 5"});
  expect_error([] { kl_div(Tensor::zeros({2, 5}), Tensor::zeros({2, 4})); }, {"kl_div", "shape"});
  expect_error(
      [] {
        kl_div(Tensor::zeros({2, 5}, DType::f64), Tensor::zeros({2, 5}));
      },
      {"kl_div", "dtype"});
  expect_error(
      [] {
        kl_div(Tensor::zeros({2, 5}, DType::i64), Tensor::zeros({2, 5}, DType::i64));
      },
      {"kl_div", "i64"});
}

TEST(LossErrors, EmbeddingBadInputs) {
  Tensor table = Tensor::zeros({6, 4});
  expect_error(
      [&] {
        embedding(table, Tensor::from_vector(std::vector<int64_t>{0, 5, 6, 1}, {2, 2}, DType::i64));
      },
      {"embedding", "id 6", "[1, 0]", "[0, 6)"});
  expect_error(
      [&] { embedding(table, Tensor::from_vector(std::vector<int64_t>{-1}, {1}, DType::i64)); },
      {"embedding", "id -1"});
  expect_error([&] { embedding(table, Tensor::zeros({3}, DType::f32)); }, {"embedding", "i64"});
  expect_error([&] { embedding(Tensor::zeros({6}), Tensor::zeros({3}, DType::i64)); },
               {"embedding", "2-D"});
  expect_error([&] { embedding(table, Tensor::zeros({3}, DType::i64), 6); },
               {"embedding", "padding_idx 6"});
  expect_error([&] { embedding(table, Tensor::zeros({3}, DType::i64), -7); },
               {"embedding", "padding_idx -7"});
}

}  // namespace
}  // namespace lethe
