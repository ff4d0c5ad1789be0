// Helpers shared by the optim tests: expecting a lethe::Error whose message names the problem.
// Test-only; no fixture parsing here.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "engine/error.h"

namespace lethe::optim_test {

// Runs fn, expects a lethe::Error whose message contains every one of `needles`.
template <typename Fn>
void expect_error(Fn&& fn, std::initializer_list<const char*> needles) {
  try {
    fn();
    ADD_FAILURE() << "expected a lethe::Error mentioning '" << *needles.begin() << "'";
  } catch (const lethe::Error& e) {
    std::string msg = e.what();
    for (const char* n : needles) {
      EXPECT_NE(msg.find(n), std::string::npos) << "message '" << msg << "' lacks '" << n << "'";
    }
  }
}

}  // namespace lethe::optim_test
