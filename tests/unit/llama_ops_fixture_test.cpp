// rms_norm and rotary_embedding against transformers' own modules (LlamaRMSNorm,
// LlamaRotaryEmbedding + apply_rotary_pos_emb) in float32: tests/unit/fixtures/llama_ops.json,
// written by tools/fixtures/make_llama_op_fixtures.py. Values and gradients, on the test device.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "tests/common/compare.h"
#include "tests/common/device.h"
#include "tests/common/paths.h"

namespace lethe {
namespace {

using nlohmann::json;
using testing::nan_max;

const json& fixture() {
  static const json j = [] {
    std::ifstream f(testing::source_dir() + "/tests/unit/fixtures/llama_ops.json");
    if (!f) throw std::runtime_error("cannot open tests/unit/fixtures/llama_ops.json");
    return json::parse(f);
  }();
  return j;
}

std::vector<double> doubles(const json& c, const char* key) {
  return c.at(key).get<std::vector<double>>();
}

// Largest |got − want| over the largest |want|.
double rel_diff(const std::vector<double>& got, const std::vector<double>& want) {
  EXPECT_EQ(got.size(), want.size());
  double worst = 0, scale = 0;
  for (size_t i = 0; i < got.size() && i < want.size(); ++i) {
    worst = nan_max(worst, std::abs(got[i] - want[i]));
    scale = nan_max(scale, std::abs(want[i]));
  }
  return scale > 0 ? worst / scale : worst;
}

Shape shape_of(const json& c) {
  return c.at("shape").get<std::vector<int64_t>>();
}

TEST(LlamaOpsFixture, RmsNormIsTransformersLlamaRmsNorm) {
  const Device dev = testing::test_device();
  ASSERT_EQ(fixture().at("rms_norm").size(), 3u);
  for (const json& c : fixture().at("rms_norm")) {
    SCOPED_TRACE(c.at("name").get<std::string>());
    const Shape shape = shape_of(c);
    const int64_t cols = shape.back();
    Tensor x = Tensor::from_vector(doubles(c, "x"), shape).to(dev).set_requires_grad(true);
    Tensor w = Tensor::from_vector(doubles(c, "weight"), {cols}).to(dev).set_requires_grad(true);
    Tensor y = rms_norm(x, w, c.at("eps").get<double>());
    y.backward(Tensor::from_vector(doubles(c, "seed"), shape).to(dev));
    EXPECT_LE(rel_diff(y.to_double_vector(), doubles(c, "y")), 1e-6);
    EXPECT_LE(rel_diff(x.grad().to_double_vector(), doubles(c, "dx")), 1e-5);
    EXPECT_LE(rel_diff(w.grad().to_double_vector(), doubles(c, "dweight")), 1e-5);
  }
}

TEST(LlamaOpsFixture, RotaryEmbeddingIsTransformersApplyRotaryPosEmb) {
  const Device dev = testing::test_device();
  ASSERT_EQ(fixture().at("rope").size(), 4u);
  for (const json& c : fixture().at("rope")) {
    SCOPED_TRACE(c.at("name").get<std::string>());
    const Shape shape = shape_of(c);
    std::vector<int64_t> pos;
    for (double p : doubles(c, "positions")) pos.push_back(static_cast<int64_t>(p));
    const Tensor positions = Tensor::from_vector(pos, {shape[0], shape[2]}, DType::i64);
    const Tensor inv_freq = Tensor::from_vector(doubles(c, "inv_freq"), {shape[3] / 2});
    Tensor x = Tensor::from_vector(doubles(c, "x"), shape).to(dev).set_requires_grad(true);
    Tensor y = rotary_embedding(x, positions, inv_freq, c.at("attention_scaling").get<double>());
    y.backward(Tensor::from_vector(doubles(c, "seed"), shape).to(dev));
    // f32 angles and f32 cos/sin on both sides: agreement to a few f32 ulps of the values.
    EXPECT_LE(rel_diff(y.to_double_vector(), doubles(c, "y")), 1e-6);
    EXPECT_LE(rel_diff(x.grad().to_double_vector(), doubles(c, "dx")), 1e-6);
  }
}

// The large-position case is what it claims: computing the angle in double instead of float32
// would move the result by far more than the tolerance above, so the test tells the two apart.
TEST(LlamaOpsFixture, LargePositionsNeedFloat32Angles) {
  const json& c = fixture().at("rope").at(1);
  ASSERT_EQ(c.at("name").get<std::string>(), "theta 5e5 large positions");
  const std::vector<double> f = doubles(c, "inv_freq");
  double worst = 0;
  for (double p : doubles(c, "positions"))
    for (double fi : f) {
      const float angle32 = static_cast<float>(p) * static_cast<float>(fi);
      worst = nan_max(worst, std::abs(std::cos(static_cast<double>(angle32)) - std::cos(p * fi)));
    }
  EXPECT_GT(worst, 1e-4);
}

}  // namespace
}  // namespace lethe
