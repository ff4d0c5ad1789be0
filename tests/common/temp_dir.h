// A per-process scratch directory for tests, removed when the test process exits (ctest runs each
// test in its own process). Test helper only; must not be used by library code.
#pragma once

#include <unistd.h>

#include <cstdlib>
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

// For manual cross-checks with the reference tools (make_io_fixtures.py --verify…,
// make_opt_fixtures.py --verify-saved): when LETHE_TEST_KEEP=DIR is set, copies the file or
// directory `src` to DIR/name (replacing it). Without it nothing is written outside the
// per-process scratch directories, so concurrent test runs (two build trees) never collide.
inline void keep_copy(const std::filesystem::path& src, const std::string& name) {
  const char* keep = std::getenv("LETHE_TEST_KEEP");
  if (!keep || !*keep) return;
  const auto dst = std::filesystem::path(keep) / name;
  std::filesystem::create_directories(dst.parent_path());
  std::filesystem::remove_all(dst);
  std::filesystem::copy(src, dst, std::filesystem::copy_options::recursive);
}

}  // namespace lethe::testing
