// Mode 2 of the op table: every registered op row runs on CUDA and on the CPU in f32, outputs and
// gradients compared; device allocations are poisoned (NaN) so unwritten outputs fail.
#include <gtest/gtest.h>

#include "cuda_test_util.h"
#include "op_harness.h"

namespace lethe::testing {
namespace {

class CudaVsCpu : public ::testing::TestWithParam<size_t> {};

TEST_P(CudaVsCpu, OutputsAndGradientsMatch) {
  LETHE_REQUIRE_CUDA(gpu);
  const OpCase& c = op_table().at(GetParam());
  SCOPED_TRACE(c.name);
  set_poison(true);
  std::string err;
  try {
    err = compare_backends(c, Device::cuda());
  } catch (const std::exception& e) {
    err = std::string("threw: ") + e.what();
  }
  set_poison(false);
  EXPECT_EQ(err, "") << c.name;
}

std::string case_name(const ::testing::TestParamInfo<size_t>& info) {
  std::string s = op_table().at(info.param).name;
  for (char& ch : s)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return s + "_" + std::to_string(info.param);
}

INSTANTIATE_TEST_SUITE_P(Ops, CudaVsCpu, ::testing::Range<size_t>(0, op_table().size()), case_name);

}  // namespace
}  // namespace lethe::testing
