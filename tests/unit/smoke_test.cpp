#include <gtest/gtest.h>
#include "engine/ops.h"
using namespace lethe;
TEST(Smoke, MatmulAdd) {
  Tensor a = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = Tensor::from_vector(std::vector<double>{1, 0, 0, 1, 1, 1}, {3, 2});
  Tensor c = matmul(a, b);
  EXPECT_EQ(c.to_double_vector(), (std::vector<double>{4, 5, 10, 11}));
}
