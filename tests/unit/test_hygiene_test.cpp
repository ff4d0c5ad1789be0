// Rules for the test sources themselves, checked on the sources. Tests write only into their own
// per-process scratch directories (tests/common/temp_dir.h): a fixed name under the temp
// directory is shared by every build tree, so two trees testing at once collide (four tests once
// did exactly that). Benchmark programs (*_bench.cpp, *_throughput.cpp) are tools, not tests,
// and may keep a file at a fixed path on purpose (--reuse).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "tests/common/paths.h"

namespace lethe::testing {
namespace {

namespace fs = std::filesystem;

// The test sources (.cpp, .h under tests/) that `bad` matches, relative to the source root;
// benchmark programs and this file (where the patterns are written) are not scanned.
std::vector<std::string> sources_matching(const std::function<bool(const std::string&)>& bad) {
  std::vector<std::string> offenders;
  size_t scanned = 0;
  for (const auto& e : fs::recursive_directory_iterator(fs::path(source_dir()) / "tests")) {
    const std::string name = e.path().filename().string();
    const std::string ext = e.path().extension().string();
    if (!e.is_regular_file() || (ext != ".cpp" && ext != ".h")) continue;
    if (name.ends_with("_bench.cpp") || name.ends_with("_throughput.cpp")) continue;
    if (name == "test_hygiene_test.cpp") continue;
    std::ifstream in(e.path());
    std::stringstream ss;
    ss << in.rdbuf();
    ++scanned;
    if (bad(ss.str())) offenders.push_back(fs::relative(e.path(), source_dir()).string());
  }
  EXPECT_GE(scanned, 30u) << "the scan found too few test sources";
  return offenders;
}

TEST(TestHygiene, NoTestWritesToAFixedPathUnderTheTempDirectory) {
  const std::regex fixed_temp(R"((temp_directory_path\(\)\s*/\s*")|("/tmp/))");
  const std::vector<std::string> offenders = sources_matching(
      [&](const std::string& text) { return std::regex_search(text, fixed_temp); });
  EXPECT_TRUE(offenders.empty()) << "fixed temp paths (use lethe::testing::scratch_dir): "
                                 << ::testing::PrintToString(offenders);
}

// A running maximum of errors must keep a NaN (tests/common/compare.h): `worst = std::max(worst,
// err)` drops a NaN err, and `if (!(err <= worst)) worst = err` forgets an earlier NaN at the next
// finite err. Errors are recognised by the variable's name (worst, err…, diff…, biggest, max_ref…).
TEST(TestHygiene, RunningMaximaOfErrorsAreNanSafe) {
  const std::regex std_max(
      R"(\b((?:worst|err|error|diff|max_err|max_diff|max_error|biggest|max_ref)\w*)\s*=\s*)"
      R"(std::(?:max|min)\s*\(\s*\1\s*,)");
  const std::regex forgetful(R"(if\s*\(\s*!\s*\(\s*\w+\s*<=\s*(\w+)\s*\)\s*\)\s*\1\s*=[^=])");
  const std::vector<std::string> offenders = sources_matching([&](const std::string& text) {
    return std::regex_search(text, std_max) || std::regex_search(text, forgetful);
  });
  EXPECT_TRUE(offenders.empty()) << "NaN-blind running maxima of errors (use nan_max): "
                                 << ::testing::PrintToString(offenders);
}

}  // namespace
}  // namespace lethe::testing
