// Fuzz target: loading a BPE tokenizer from tokenizer.json (model and its flags, vocab, merges in
// both forms, added tokens, normalizers, pre-tokenizers, post-processor and decoders of the GPT-2,
// Llama-3, Qwen2 and Llama-2 families), then encoding and decoding a fixed text with whatever
// loaded.
#include <string_view>

#include "models/tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto dir = lethe::fuzz::input_as_file("tokenizer_json", "tokenizer.json",
                                              lethe::fuzz::as_text(data, size));
  lethe::fuzz::expect_only_lethe_errors([&] {
    auto tok = lethe::tokenizer::load_tokenizer(dir.string());
    auto ids = tok->encode(
        "Hello world, héllo 123 <s></s>  \n\t! DON'T e\xCC\x81 <|eot_id|><|im_end|> \xE2\x96\x81x",
        true);
    (void)tok->decode(ids, false);
    (void)tok->decode(ids, true);
  });
  return 0;
}
