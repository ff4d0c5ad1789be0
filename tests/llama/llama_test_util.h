// Helpers for the Llama-family tests: fixture paths and reference.json access. Must not compute
// expected values: those come from tools/fixtures/make_llama_fixtures.py.
#pragma once

#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/tensor.h"
#include "tests/common/paths.h"

namespace lethe::models::test {

inline const std::vector<std::string>& llama_fixture_names() {
  static const std::vector<std::string> names = {"llama_gqa", "llama_mqa_tied", "llama3_bias_hd",
                                                 "qwen2", "mistral"};
  return names;
}

inline std::string llama_fixture_dir(const std::string& name) {
  return lethe::testing::source_dir() + "/tests/llama/fixtures/" + name;
}

inline const nlohmann::json& llama_reference(const std::string& name) {
  static std::map<std::string, nlohmann::json> cache;
  auto it = cache.find(name);
  if (it == cache.end()) {
    std::ifstream in(llama_fixture_dir(name) + "/reference.json");
    it = cache.emplace(name, nlohmann::json::parse(in)).first;
  }
  return it->second;
}

inline Tensor ids_tensor(const nlohmann::json& values, const nlohmann::json& shape) {
  return Tensor::from_vector(values.get<std::vector<int64_t>>(), shape.get<std::vector<int64_t>>(),
                             DType::i64);
}

}  // namespace lethe::models::test
