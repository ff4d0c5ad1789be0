// Shared by the tokenizer tests: the fixture folder, JSON-lines reading, small file helpers and
// id-list printing. Test helper only.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tests/common/paths.h"

namespace lethe::testing::tokenizer {

inline std::filesystem::path fixtures_dir() {
  return std::filesystem::path(source_dir()) / "tests" / "tokenizer" / "fixtures";
}

inline std::vector<nlohmann::json> read_jsonl(const std::filesystem::path& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::vector<nlohmann::json> rows;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) rows.push_back(nlohmann::json::parse(line));
  }
  return rows;
}

inline std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

inline std::string show(const std::vector<int64_t>& v) {
  std::ostringstream ss;
  for (auto x : v) ss << x << ' ';
  return ss.str();
}

}  // namespace lethe::testing::tokenizer
