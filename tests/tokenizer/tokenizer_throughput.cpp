// tokenizer_throughput: single-threaded encode speed of load_tokenizer(dir) on a text file.
// Usage: tokenizer_throughput [tokenizer-dir] [text-file] [MB]; defaults to the test fixtures.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "engine/error.h"
#include "models/tokenizer/tokenizer.h"

int main(int argc, char** argv) {
  const std::string fixtures = std::string(LETHE_SOURCE_DIR) + "/tests/tokenizer/fixtures";
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
    while (text.size() < megabytes * 1e6) text += unit;

    // Encode in ~1 kB lines-sized documents, as a data pipeline would (and as the HF bench does).
    std::vector<std::string_view> docs;
    for (size_t pos = 0; pos < text.size();) {
      size_t end = std::min(text.size(), pos + 1000);
      while (end < text.size() && text[end] != '\n') ++end;
      docs.emplace_back(text.data() + pos, end - pos);
      pos = end;
    }
    size_t tokens = 0;
    double best = 1e30;
    for (int rep = 0; rep < 3; ++rep) {
      tokens = 0;
      const auto t0 = std::chrono::steady_clock::now();
      for (auto d : docs) tokens += tok->encode(d, false).size();
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = std::min(best, s);
    }
    std::printf(
        "lethe tokenizer: %.2f MB in %zu docs, %zu tokens, best of 3: %.3f s = %.2f MB/s, "
        "%.2f M tokens/s\n",
        text.size() / 1e6, docs.size(), tokens, best, text.size() / 1e6 / best,
        tokens / 1e6 / best);
  } catch (const lethe::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
