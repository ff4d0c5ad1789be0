// Mode 1 of the op table: every registered case passes an f64 finite-difference gradient check.
#include <gtest/gtest.h>

#include "op_harness.h"

namespace lethe::testing {
namespace {

class OpGradcheck : public ::testing::TestWithParam<size_t> {};

TEST_P(OpGradcheck, MatchesFiniteDifferences) {
  const OpCase& c = op_table().at(GetParam());
  SCOPED_TRACE(c.name);
  EXPECT_EQ(gradcheck(c), "") << c.name;
}

std::string case_name(const ::testing::TestParamInfo<size_t>& info) {
  std::string s = op_table().at(info.param).name;
  for (char& ch : s)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return s + "_" + std::to_string(info.param);
}

INSTANTIATE_TEST_SUITE_P(Ops, OpGradcheck, ::testing::Range<size_t>(0, op_table().size()),
                         case_name);

}  // namespace
}  // namespace lethe::testing
