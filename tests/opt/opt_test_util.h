// Helpers for the OPT tests: fixture paths, reference.json access, temp dirs, tensor builders.
// Must not compute expected values: those come from tools/fixtures/make_opt_fixtures.py.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "engine/tensor.h"
#include "tests/common/temp_dir.h"
#include "tests/common/paths.h"

namespace lethe::models::test {

inline const std::vector<std::string>& fixture_names() {
  static const std::vector<std::string> names = {"pre_ln",    "post_ln_proj",   "f16",
                                                 "sharded",   "decoder_prefix", "lm_head_alias",
                                                 "head_dim5", "no_final_ln"};
  return names;
}

inline std::string fixture_dir(const std::string& name) {
  return lethe::testing::source_dir() + "/tests/opt/fixtures/" + name;
}

inline const nlohmann::json& reference(const std::string& name) {
  static std::map<std::string, nlohmann::json> cache;
  auto it = cache.find(name);
  if (it == cache.end()) {
    std::ifstream in(fixture_dir(name) + "/reference.json");
    it = cache.emplace(name, nlohmann::json::parse(in)).first;
  }
  return it->second;
}

inline Shape shape_of(const nlohmann::json& j) {
  return j.get<std::vector<int64_t>>();
}

inline Tensor int_tensor(const nlohmann::json& values, const nlohmann::json& shape) {
  return Tensor::from_vector(values.get<std::vector<int64_t>>(), shape_of(shape), DType::i64);
}

// A fresh directory under the system temp dir, unique per process and per call.
inline std::string temp_dir(const std::string& tag) {
  return lethe::testing::scratch_dir("opt", tag);
}

// The message of the lethe::Error that `f` throws, or "(no error)".
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace lethe::models::test
