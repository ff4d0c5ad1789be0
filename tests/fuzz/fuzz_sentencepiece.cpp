// Fuzz target: loading a SentencePiece model (tokenizer.model, a protobuf) from arbitrary bytes,
// as SentencePiece runs it and as transformers converts it for a LlamaTokenizer (lethe's own
// protobuf reader and BPE derivation), then encoding and decoding a fixed text with whatever
// loaded.
#include <string_view>

#include "models/tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto text = lethe::fuzz::as_text(data, size);
  const auto dir = lethe::fuzz::input_as_file("sentencepiece", "tokenizer.model", text);
  const auto llama = lethe::fuzz::input_as_file("sentencepiece_llama", "tokenizer.model", text);
  lethe::fuzz::write_file(llama / "tokenizer_config.json",
                          R"({"tokenizer_class": "LlamaTokenizer", "add_bos_token": true})");
  for (const auto& d : {dir, llama}) {
    lethe::fuzz::expect_only_lethe_errors([&] {
      auto tok = lethe::tokenizer::load_tokenizer(d.string());
      auto ids = tok->encode("Hello world, héllo 123 <s> \xE2\x96\x81", true);
      (void)tok->decode(ids, true);
      (void)tok->decode(ids, false);
    });
  }
  return 0;
}
