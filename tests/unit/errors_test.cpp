// Bad input to the engine: each case must throw lethe::Error with a message that names the problem.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "kernels/backend.h"

using namespace lethe;

namespace {

// Runs fn, expecting a lethe::Error whose message contains every fragment.
template <typename Fn>
void expect_error(Fn&& fn, std::initializer_list<const char*> fragments) {
  try {
    fn();
    FAIL() << "expected lethe::Error";
  } catch (const Error& e) {
    std::string msg = e.what();
    for (const char* f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << "message: " << msg;
  }
}

Tensor leaf(const Shape& s, DType dt = DType::f32) {
  Tensor t = Tensor::ones(s, dt);
  t.set_requires_grad(true);
  return t;
}

}  // namespace

TEST(Errors, ShapeMismatchNamesOpAndShapes) {
  expect_error(
      [] {
        add(Tensor::ones({2, 3}), Tensor::ones({4, 3}));
      },
      {"add", "[2, 3]", "[4, 3]"});
  expect_error(
      [] {
        matmul(Tensor::ones({2, 3}), Tensor::ones({4, 5}));
      },
      {"matmul", "inner dimensions", "f32[2, 3]", "f32[4, 5]"});
  expect_error(
      [] {
        linear(Tensor::ones({2, 3}), Tensor::ones({4, 5}));
      },
      {"linear", "in_features = 5"});
  expect_error(
      [] {
        linear(Tensor::ones({2, 5}), Tensor::ones({4, 5}), Tensor::ones({3}));
      },
      {"linear", "bias", "out_features = 4"});
  expect_error(
      [] {
        concat({Tensor::ones({2, 3}), Tensor::ones({3, 3})}, 1);
      },
      {"concat", "outside dim 1"});
  expect_error([] { Tensor::ones({2, 3}).view({4, 2}); }, {"view", "[4, 2]", "6 elements"});
  expect_error([] { Tensor::ones({2, 3}).transpose(0, 1).view({6}); }, {"not contiguous"});
  expect_error(
      [] {
        Tensor::from_vector(std::vector<double>{1, 2, 3}, {2, 2});
      },
      {"3 values", "[2, 2]"});
}

TEST(Errors, DtypeMismatchNamesBoth) {
  expect_error([] { add(Tensor::ones({2}), Tensor::ones({2}, DType::f64)); },
               {"add", "dtype mismatch", "f32[2]", "f64[2]"});
  expect_error([] { relu(Tensor::ones({2}, DType::i64)); }, {"relu", "i64"});
  expect_error(
      [] {
        matmul(Tensor::ones({2, 2}, DType::bf16), Tensor::ones({2, 2}, DType::bf16));
      },
      {"matmul", "bf16", "to(DType::f32)"});
  expect_error([] { Tensor::ones({2}, DType::i64).set_requires_grad(true); },
               {"not a floating-point"});
}

TEST(Errors, BackwardTwiceThroughFreedGraph) {
  Tensor w = leaf({3, 3});
  Tensor y = sum(mul(w, w));
  y.backward();
  expect_error([&] { y.backward(); }, {"second time", "retain_graph"});
}

TEST(Errors, BackwardTwiceWithRetainGraphAccumulates) {
  Tensor w = leaf({2});
  Tensor y = sum(mul(w, w));
  y.backward(Tensor(), /*retain_graph=*/true);
  y.backward();
  EXPECT_EQ(w.grad().to_double_vector(), (std::vector<double>{4, 4}));  // 2 * (2w) with w = 1
}

TEST(Errors, NonScalarBackwardNeedsSeed) {
  Tensor w = leaf({2, 2});
  Tensor y = mul(w, w);
  expect_error([&] { y.backward(); }, {"not a scalar", "seed"});
  expect_error([&] { y.backward(Tensor::ones({3})); }, {"seed", "does not match"});
}

TEST(Errors, BackwardWithoutGrad) {
  Tensor a = Tensor::ones({2});
  expect_error([&] { sum(a).backward(); }, {"does not require grad"});
  Tensor w = leaf({2});
  Tensor y;
  {
    NoGradGuard ng;
    y = sum(mul(w, w));
  }
  EXPECT_FALSE(y.requires_grad());
  expect_error([&] { y.backward(); }, {"NoGradGuard"});
}

TEST(Errors, InPlaceOnTensorThatRequiresGrad) {
  Tensor w = leaf({2});
  expect_error([&] { w.fill_(3.0); }, {"fill_", "requires grad"});
  NoGradGuard ng;
  w.fill_(3.0);
  EXPECT_EQ(w.to_double_vector(), (std::vector<double>{3, 3}));
}

TEST(Errors, ItemAndDevice) {
  expect_error([] { Tensor::ones({2}).item(); }, {"item()", "2 elements"});
  expect_error([] { Device::parse("tpu"); }, {"unknown device 'tpu'"});
  expect_error([] { Tensor::ones({2}).size(3); }, {"size(3)"});
  expect_error([] { Tensor::ones({2, 3}).slice(2, 0, 1); }, {"slice", "dim 2"});
  expect_error([] { dropout(Tensor::ones({2}), 1.5, true, 0); }, {"dropout", "p must be"});
  if (!kernels::cuda_backend()) {
    expect_error([] { Tensor::ones({2}, DType::f32, Device::cuda()); }, {"cuda", "not available"});
  }
}

namespace lethe {
namespace {

// Element and byte counts are computed with overflow checks: a size that would wrap around into
// a small allocation (and later writes past it) is an error naming the shape.
TEST(Errors, ElementAndByteCountsNeverOverflow) {
  const int64_t big = int64_t{1} << 40;
  expect_error(
      [&] {
        Tensor::empty({big, big});
      },
      {"more elements", "[1099511627776, 1099511627776]"});
  expect_error([&] { Tensor::empty({int64_t{1} << 62, 4}, DType::f64); }, {"more"});
  expect_error([&] { Tensor::zeros({int64_t{1} << 61, 2}, DType::f32); }, {"bytes"});
  expect_error([&] { (void)shape_numel({3, -2}); }, {"negative dimension", "[3, -2]"});
  EXPECT_EQ(shape_numel({int64_t{1} << 31, int64_t{1} << 31}), int64_t{1} << 62);
  float x = 0;
  expect_error(
      [&] {
        Tensor::from_borrowed(&x, {int64_t{1} << 62, 8}, DType::f32, nullptr);
      },
      {"more elements"});
}

}  // namespace
}  // namespace lethe

// The Llama family's ops and the fused dropouts: each bad argument is named.
TEST(Errors, RotaryEmbeddingArguments) {
  const Tensor x = Tensor::ones({1, 2, 3, 4});
  const Tensor pos = Tensor::from_vector(std::vector<int64_t>{0, 1, 2}, {1, 3}, DType::i64);
  const Tensor freq = Tensor::ones({2});
  expect_error(
      [&] {
        rotary_embedding(Tensor::ones({1, 2, 3, 5}), pos, Tensor::ones({2}));
      },
      {"rotary_embedding", "head dim 5", "even"});
  expect_error(
      [&] {
        rotary_embedding(Tensor::ones({2, 3, 4}), pos, freq);
      },
      {"rotary_embedding", "4-d"});
  expect_error(
      [&] {
        rotary_embedding(x, Tensor::from_vector(std::vector<int64_t>{0, 1}, {1, 2}, DType::i64),
                         freq);
      },
      {"rotary_embedding", "positions", "[1, 3]"});
  expect_error(
      [&] {
        rotary_embedding(x, Tensor::ones({1, 3}), freq);
      },
      {"rotary_embedding", "positions", "i64"});
  expect_error([&] { rotary_embedding(x, pos, Tensor::ones({3})); },
               {"rotary_embedding", "inv_freq", "[2]"});
  expect_error([&] { rotary_embedding(x, pos, Tensor::ones({2}, DType::f64)); },
               {"rotary_embedding", "inv_freq", "f32"});
  expect_error([&] { rotary_embedding(x, pos, freq, std::nan("")); },
               {"rotary_embedding", "attention_scaling"});
}

TEST(Errors, RmsNormArguments) {
  expect_error(
      [] {
        rms_norm(Tensor::ones({2, 5}), Tensor::ones({4}));
      },
      {"rms_norm", "weight", "[5]"});
  expect_error(
      [] {
        rms_norm(Tensor::ones({2, 5}), Tensor::ones({5}), -1.0);
      },
      {"rms_norm", "eps"});
  expect_error([] { rms_norm(Tensor::ones({2, 5}), Tensor::ones({5}, DType::f64)); }, {"rms_norm"});
}

TEST(Errors, FusedDropoutProbabilities) {
  const Tensor q = Tensor::ones({1, 2, 3, 4});
  expect_error(
      [&] {
        attention(q, q, q, Tensor(), true, 1.0, DropoutSpec{1.0, 0, 0});
      },
      {"attention", "dropout", "[0, 1)"});
  expect_error(
      [&] {
        attention(q, q, q, Tensor(), true, 1.0, DropoutSpec{-0.1, 0, 0});
      },
      {"attention", "dropout"});
  const Tensor x = Tensor::ones({2, 4});
  expect_error(
      [&] {
        add_layer_norm(x, x, Tensor::ones({4}), Tensor(), 1e-5, DropoutSpec{1.5, 0, 0});
      },
      {"add_layer_norm", "dropout", "[0, 1)"});
}
