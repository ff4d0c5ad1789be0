// A per-process scratch directory for tests, removed when the test process exits (ctest runs each
// test in its own process). Test helper only; must not be used by library code.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

namespace lethe::testing {

// A fresh directory <tmp>/lethe_<prefix>_<tag>_<pid>_<n>, unique per process and per call.
inline std::string scratch_dir(const std::string& prefix, const std::string& tag) {
  static int counter = 0;
  auto dir = std::filesystem::temp_directory_path() /
             ("lethe_" + prefix + "_" + tag + "_" + std::to_string(::getpid()) + "_" +
              std::to_string(counter++));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  struct Cleanup {
    std::vector<std::filesystem::path> dirs;
    ~Cleanup() {
      std::error_code ec;
      for (const auto& d : dirs) std::filesystem::remove_all(d, ec);
    }
  };
  static Cleanup cleanup;
  cleanup.dirs.push_back(dir);
  return dir.string();
}

}  // namespace lethe::testing
