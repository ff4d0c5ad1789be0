// Fuzz target: the training-data loaders (trainers/data/dataset.h). Byte 0 picks the format
// (tofu, pku, truthfulqa, muse, jsonl, tokenized), byte 1 the options (bits 0-5: max_length, 2 to
// 33 then 34 to 1026 in steps of 32; bit 6: add_eos; bit 7: the first line of the rest is the
// prompt template); the rest is the
// data file. Text records become samples with the byte-level BPE fixture tokenizer, and every
// sample must satisfy the documented invariants. The same file also goes through the readers of
// the harmful-rate evaluation: labelled texts (pku or jsonl, by byte 0) and prompts.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "eval/harmful.h"
#include "models/tokenizer/tokenizer.h"
#include "tests/common/paths.h"
#include "tests/fuzz/fuzz_common.h"
#include "trainers/classifier.h"
#include "trainers/data/dataset.h"

namespace {

namespace data = lethe::trainers::data;

const lethe::tokenizer::Tokenizer& bpe() {
  static const auto t = lethe::tokenizer::load_tokenizer(lethe::testing::source_dir() +
                                                         "/tests/tokenizer/fixtures/bpe");
  return *t;
}

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz: sample invariant broken: %s\n", what);
    std::abort();
  }
}

void check_samples(const std::vector<data::Sample>& samples, int64_t max_length,
                   int64_t vocab_size) {
  for (const auto& s : samples) {
    check(!s.input_ids.empty(), "empty sample");
    check(s.input_ids.size() == s.labels.size(), "labels and input_ids differ in length");
    check(static_cast<int64_t>(s.input_ids.size()) <= max_length, "longer than max_length");
    bool labelled = false;
    for (size_t i = 0; i < s.input_ids.size(); ++i) {
      check(s.input_ids[i] >= 0 && s.input_ids[i] < vocab_size, "id outside the vocabulary");
      check(s.labels[i] == -100 || (s.labels[i] >= 0 && s.labels[i] < vocab_size),
            "label neither -100 nor an id");
      labelled = labelled || (i > 0 && s.labels[i] != -100);  // position 0 is never a target
    }
    check(labelled, "no token to predict");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data_bytes, size_t size) {
  if (size < 2) return 0;
  static const data::Format formats[] = {data::Format::tofu,       data::Format::pku,
                                         data::Format::truthfulqa, data::Format::muse,
                                         data::Format::jsonl,      data::Format::tokenized};
  data::SampleOptions options;
  options.format = formats[data_bytes[0] % 6];
  const int64_t m = data_bytes[1] & 63;
  options.max_length = m < 32 ? 2 + m : 2 + (m - 31) * 32;
  options.add_eos = (data_bytes[1] & 64) != 0;
  std::string_view body = lethe::fuzz::as_text(data_bytes + 2, size - 2);
  if (data_bytes[1] & 128) {
    const size_t nl = body.find('\n');
    options.prompt_template = std::string(body.substr(0, nl));
    body = nl == std::string_view::npos ? std::string_view() : body.substr(nl + 1);
  }
  const auto dir = lethe::fuzz::input_as_file("dataset", "data.jsonl", body);
  const std::string path = (dir / "data.jsonl").string();
  const int64_t vocab_size = bpe().vocab_size();
  lethe::fuzz::expect_only_lethe_errors([&] {
    const auto samples = data::load_samples(path, options, &bpe(), vocab_size);
    check_samples(samples, options.max_length, vocab_size);
  });
  if (options.format != data::Format::tokenized) {
    lethe::fuzz::expect_only_lethe_errors([&] {
      options.tokenization = data::Tokenization::joint;
      const auto records = data::load_records(path, options.format);
      check(!records.empty(), "no record and no error");
      check_samples(data::make_samples(records, options, bpe()), options.max_length, vocab_size);
    });
  }
  lethe::fuzz::expect_only_lethe_errors([&] {
    const auto texts = lethe::trainers::load_labelled_texts(
        path, data_bytes[0] & 1 ? "pku" : "jsonl", options.prompt_template, 2);
    check(!texts.empty(), "no labelled text and no error");
    for (const auto& t : texts) check(t.label == 0 || t.label == 1, "label outside [0, 2)");
  });
  lethe::fuzz::expect_only_lethe_errors([&] {
    const auto prompts = lethe::eval::load_prompts(path);
    check(!prompts.empty(), "no prompt and no error");
  });
  return 0;
}
