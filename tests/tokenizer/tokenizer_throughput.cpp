// tokenizer_throughput: single-threaded encode speed of load_tokenizer(dir) on a text file.
// Usage: tokenizer_throughput [tokenizer-dir] [text-file] [MB]; defaults to the test fixtures.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "engine/error.h"
#include "models/tokenizer/tokenizer.h"
#include "tests/common/paths.h"

namespace {

// This thread's CPU time: a busy shared machine distorts it less than wall time.
double thread_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string fixtures = lethe::testing::source_dir() + "/tests/tokenizer/fixtures";
  const std::string dir = argc > 1 ? argv[1] : fixtures + "/bpe";
  const std::string path = argc > 2 ? argv[2] : fixtures + "/corpus.txt";
  const double megabytes = argc > 3 ? std::atof(argv[3]) : 5.0;
  try {
    auto tok = lethe::tokenizer::load_tokenizer(dir);
    std::ifstream in(path, std::ios::binary);
    LETHE_CHECK(in.good(), path, ": cannot open");
    std::ostringstream ss;
    ss << in.rdbuf();
    const std::string unit = ss.str();
    LETHE_CHECK(!unit.empty(), path, ": empty");
    std::string text;
    while (static_cast<double>(text.size()) < megabytes * 1e6) text += unit;

    // ~1 kB documents cut at newlines, as a data pipeline would feed them (the HF bench cuts the
    // same bytes the same way).
    std::vector<std::string_view> docs;
    for (size_t pos = 0; pos < text.size();) {
      size_t end = std::min(text.size(), pos + 1000);
      while (end < text.size() && text[end] != '\n') ++end;
      docs.emplace_back(text.data() + pos, end - pos);
      pos = end;
    }
    size_t tokens = 0;
    double best = 1e30, best_cpu = 1e30;
    for (int rep = 0; rep < 5; ++rep) {
      tokens = 0;
      const double c0 = thread_cpu_seconds();
      const auto t0 = std::chrono::steady_clock::now();
      for (auto d : docs) tokens += tok->encode(d, false).size();
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = std::min(best, s);
      best_cpu = std::min(best_cpu, thread_cpu_seconds() - c0);
    }
    const double mb = static_cast<double>(text.size()) / 1e6;
    std::printf(
        "lethe tokenizer: %.2f MB in %zu docs, %zu tokens, best of 5: wall %.3f s = %.2f MB/s, "
        "cpu %.3f s = %.2f MB/s (%.2f M tokens/s)\n",
        mb, docs.size(), tokens, best, mb / best, best_cpu, mb / best_cpu,
        static_cast<double>(tokens) / 1e6 / best_cpu);
  } catch (const lethe::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
