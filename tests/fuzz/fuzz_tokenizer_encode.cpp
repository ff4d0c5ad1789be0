// Fuzz target: the tokenizers themselves. Arbitrary bytes are encoded with the byte-level BPE, the
// SentencePiece, and the Llama-3 / Qwen2 / Llama-2 style fixtures (invalid UTF-8 must be a
// lethe::Error), valid text must round-trip through the byte-level BPEs without a normalizer,
// and the ids are decoded again.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "models/tokenizer/tokenizer.h"
#include "tests/common/paths.h"
#include "tests/fuzz/fuzz_common.h"

namespace {
const lethe::tokenizer::Tokenizer& bpe() {
  static const auto t = lethe::tokenizer::load_tokenizer(lethe::testing::source_dir() +
                                                         "/tests/tokenizer/fixtures/bpe");
  return *t;
}
const lethe::tokenizer::Tokenizer& spm() {
  static const auto t = lethe::tokenizer::load_tokenizer(lethe::testing::source_dir() +
                                                         "/tests/tokenizer/fixtures/spm");
  return *t;
}
// The issue-23 families: Llama-3 (lossless), Qwen2 (NFC), Llama-2 (Metaspace, byte fallback).
const std::vector<std::unique_ptr<lethe::tokenizer::Tokenizer>>& families() {
  static const auto t = [] {
    std::vector<std::unique_ptr<lethe::tokenizer::Tokenizer>> v;
    for (const char* name : {"llama3", "qwen2", "llama2", "llama2_legacy"}) {
      v.push_back(lethe::tokenizer::load_tokenizer(lethe::testing::source_dir() +
                                                   "/tests/tokenizer/fixtures/" + name));
    }
    return v;
  }();
  return t;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  lethe::fuzz::expect_only_lethe_errors([&] {
    const auto ids = bpe().encode(text, false);
    // Byte-level BPE is lossless on valid UTF-8 (encode throws on anything else).
    if (bpe().decode(ids, false) != text) {
      std::fprintf(stderr, "fuzz: BPE round trip changed the text\n");
      std::abort();
    }
  });
  lethe::fuzz::expect_only_lethe_errors([&] {
    const auto ids = spm().encode(text, true);
    (void)spm().decode(ids, true);
  });
  for (const auto& tok : families()) {
    lethe::fuzz::expect_only_lethe_errors([&] {
      const auto ids = tok->encode(text, true);
      (void)tok->decode(ids, true);
      const std::string back = tok->decode(tok->encode(text, false), false);
      if (tok == families().front() && back != text) {  // Llama-3: no normalizer, byte-level
        std::fprintf(stderr, "fuzz: Llama-3 style round trip changed the text\n");
        std::abort();
      }
    });
  }
  lethe::fuzz::expect_only_lethe_errors([&] {
    // The bytes as ids, in and out of range, through both decoders.
    std::vector<int64_t> ids;
    for (size_t i = 0; i + 2 <= size && ids.size() < 64; i += 2)
      ids.push_back(static_cast<int16_t>(data[i] | (data[i + 1] << 8)));
    (void)bpe().decode(ids, false);
    (void)spm().decode(ids, true);
    for (const auto& tok : families()) (void)tok->decode(ids, false);
  });
  return 0;
}
