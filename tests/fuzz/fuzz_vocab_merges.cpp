// Fuzz target: loading a byte-level BPE tokenizer from vocab.json + merges.txt. The input is the
// two files joined by a line "\x00merges\x00" (no separator: all of it is vocab.json and
// merges.txt is empty); then a fixed text is encoded and decoded.
#include <string_view>

#include "models/tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view all(reinterpret_cast<const char*>(data), size);
  const std::string_view sep("\n\0merges\0\n", 10);
  const size_t at = all.find(sep);
  const std::string_view vocab = all.substr(0, at);
  const std::string_view merges = at == std::string_view::npos ? "" : all.substr(at + sep.size());
  const auto dir = lethe::fuzz::scratch() / "vocab_merges";
  std::filesystem::create_directories(dir);
  lethe::fuzz::write_file(dir / "vocab.json", vocab);
  lethe::fuzz::write_file(dir / "merges.txt", merges);
  lethe::fuzz::expect_only_lethe_errors([&] {
    auto tok = lethe::tokenizer::load_tokenizer(dir.string());
    auto ids = tok->encode("Hello world, héllo 123 </s>", true);
    (void)tok->decode(ids, true);
  });
  return 0;
}
