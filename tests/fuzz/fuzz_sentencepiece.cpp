// Fuzz target: loading a SentencePiece model (tokenizer.model, a protobuf) from arbitrary bytes,
// then encoding and decoding a fixed text with whatever loaded.
#include <string_view>

#include "models/tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto dir = lethe::fuzz::input_as_file("sentencepiece", "tokenizer.model",
                                              lethe::fuzz::as_text(data, size));
  lethe::fuzz::expect_only_lethe_errors([&] {
    auto tok = lethe::tokenizer::load_tokenizer(dir.string());
    auto ids = tok->encode("Hello world, héllo 123", true);
    (void)tok->decode(ids, true);
  });
  return 0;
}
