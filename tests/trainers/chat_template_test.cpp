// The named chat formats tokenized as open-unlearning tokenizes them: TOFU rows through
// data.template llama3_chat / llama2_chat / qwen2_chat with joint tokenization and EOS give the
// input_ids and labels transformers' tokenizers give under open-unlearning's procedure
// (tools/fixtures/make_chat_template_fixtures.py → tests/trainers/fixtures/chat/).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/io/json.h"
#include "models/tokenizer/tokenizer.h"
#include "trainers/data/dataset.h"

namespace lethe::trainers::data {
namespace {

TEST(ChatTemplates, SamplesEqualOpenUnlearningsOnTransformersTokenizers) {
  const nlohmann::json ref = io::read_json_file("tests/trainers/fixtures/chat/chat_samples.json");
  const std::vector<Record> records = load_records(ref.at("data").get<std::string>(), Format::tofu);
  int compared = 0;
  for (const nlohmann::json& c : ref.at("cases")) {
    const std::string name = c.at("template");
    SCOPED_TRACE(name);
    const auto tok = tokenizer::load_tokenizer(c.at("tokenizer").get<std::string>());
    SampleOptions o;
    o.format = Format::tofu;
    o.prompt_template = name;
    o.tokenization = Tokenization::joint;
    o.add_eos = true;
    o.max_length = 512;
    const nlohmann::json& want = c.at("samples");
    const std::vector<Record> rows(records.begin(), records.begin() + want.size());
    const std::vector<Sample> got = make_samples(rows, o, *tok);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].input_ids, want[i].at("input_ids").get<std::vector<int64_t>>()) << i;
      EXPECT_EQ(got[i].labels, want[i].at("labels").get<std::vector<int64_t>>()) << i;
      ++compared;
    }
  }
  EXPECT_EQ(compared, 18);
}

}  // namespace
}  // namespace lethe::trainers::data
