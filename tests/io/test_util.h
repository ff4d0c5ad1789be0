// Helpers shared by the io tests: fixture paths, a per-process temp dir, byte-level file builders.
// Must not compute expected values: those come from the fixtures written by the Python tools.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/error.h"
#include "tests/common/temp_dir.h"
#include "tests/common/paths.h"

namespace lethe::io::test {

inline std::string fixture(const std::string& name) {
  return lethe::testing::source_dir() + "/tests/io/fixtures/" + name;
}

// A fresh directory under the system temp dir, unique per process and per call.
inline std::string temp_dir(const std::string& tag) {
  return lethe::testing::scratch_dir("io", tag);
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline std::string u64_le(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

// A safetensors file from a header text and data bytes (header used verbatim, no padding).
inline std::string st_bytes(const std::string& header, const std::string& data) {
  return u64_le(header.size()) + header + data;
}

// Runs `fn`, expecting a lethe::Error whose message contains every one of `parts`.
template <typename Fn>
void expect_error(Fn&& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "expected lethe::Error containing '" << *parts.begin() << "'";
  } catch (const lethe::Error& e) {
    std::string msg = e.what();
    for (const auto& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "message: " << msg << "\nmissing: " << p;
  }
}

}  // namespace lethe::io::test
