// expect_error(f, {"a", "b"}): f must throw lethe::Error whose message contains every fragment.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/error.h"

namespace lethe::testing {

template <typename F>
void expect_error(F&& f, const std::vector<std::string>& fragments) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one mentioning " << fragments.front();
  } catch (const Error& e) {
    for (const std::string& n : fragments)
      EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}

}  // namespace lethe::testing
