// "transformers loads what lethe saved", checked without torch: each fixture below was written by
// transformers' save_pretrained (tools/fixtures/make_opt_fixtures.py). lethe loads it, saves it,
// and what it writes must have the same safetensors header (names, dtypes, shapes, data offsets in
// the same order, metadata), the same config.json keys and values, and the same tensor bytes.
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "engine/io/safetensors.h"
#include "models/opt/opt_model.h"
#include "tests/common/paths.h"
#include "tests/opt/opt_test_util.h"

namespace lethe::models::test {
namespace {

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  return nlohmann::json::parse(in);
}

class OptHfLayout : public ::testing::TestWithParam<std::string> {};

TEST_P(OptHfLayout, SavedCheckpointEqualsTransformersSavePretrained) {
  const std::string name = GetParam();
  const std::string ref_dir = fixture_dir(name);
  io::SafetensorsFile ref = io::SafetensorsFile::open(ref_dir + "/model.safetensors");
  ASSERT_FALSE(ref.tensors().empty());
  const DType dtype = ref.tensors()[0].dtype;

  const std::string out_dir = lethe::testing::scratch_dir("opt", "hf_layout_" + name);
  OptModel::load(ref_dir).save(out_dir, dtype);
  io::SafetensorsFile got = io::SafetensorsFile::open(out_dir + "/model.safetensors");

  // Header: the same tensors, in the same data order, at the same offsets, with the same bytes.
  EXPECT_EQ(got.metadata(), ref.metadata());
  ASSERT_EQ(got.tensors().size(), ref.tensors().size());
  for (size_t i = 0; i < ref.tensors().size(); ++i) {
    const io::TensorInfo& r = ref.tensors()[i];
    const io::TensorInfo& g = got.tensors()[i];
    SCOPED_TRACE("tensor #" + std::to_string(i) + " " + r.name);
    EXPECT_EQ(g.name, r.name);
    EXPECT_EQ(g.dtype, r.dtype);
    EXPECT_EQ(g.shape, r.shape);
    EXPECT_EQ(g.begin, r.begin);
    EXPECT_EQ(g.end, r.end);
    ASSERT_EQ(g.nbytes(), r.nbytes());
    EXPECT_EQ(std::memcmp(g.data, r.data, r.nbytes()), 0) << "tensor bytes differ";
  }

  // config.json: every key transformers wrote, with its value, and no other key. The version
  // stamp is the writer's own (lethe writes the transformers version its layout follows).
  nlohmann::json rc = read_json(ref_dir + "/config.json");
  nlohmann::json gc = read_json(out_dir + "/config.json");
  std::set<std::string> rk, gk;
  for (const auto& [k, v] : rc.items()) rk.insert(k);
  for (const auto& [k, v] : gc.items()) gk.insert(k);
  EXPECT_EQ(gk, rk);
  for (const auto& [k, v] : rc.items()) {
    if (k == "transformers_version" || !gc.contains(k)) continue;
    EXPECT_EQ(gc[k], v) << "config.json key " << k;
  }
}

// The fixtures transformers wrote with save_pretrained (the others are hand-built layouts).
INSTANTIATE_TEST_SUITE_P(Fixtures, OptHfLayout,
                         ::testing::Values("pre_ln", "post_ln_proj", "f16", "head_dim5",
                                           "no_final_ln"));

}  // namespace
}  // namespace lethe::models::test
