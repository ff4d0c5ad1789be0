// Pre-tokenised JSONL: {"input_ids": [...], "labels": [...]} per line, checked id by id.
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "engine/error.h"
#include "trainers/data/dataset.h"
#include "trainers/data/json_lines.h"

namespace lethe::trainers::data {

namespace {

constexpr int64_t kIgnore = -100;

// The integers of field `key` (an array of JSON integers: not 1.0, not true).
std::vector<int64_t> int_list(const nlohmann::json& value, const std::string& source,
                              const std::string& key) {
  const std::string where = source + ": field \"" + key + "\": ";
  LETHE_CHECK(value.is_array(), where, "expected a list of integers, got ", describe_json(value));
  std::vector<int64_t> out;
  out.reserve(value.size());
  for (size_t i = 0; i < value.size(); ++i) {
    const nlohmann::json& v = value[i];
    LETHE_CHECK(v.is_number_integer(), where, "element ", i, ": expected an integer, got ",
                describe_json(v));
    LETHE_CHECK(!v.is_number_unsigned() ||
                    v.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
                where, "element ", i, ": ", v.get<uint64_t>(), " is too large");
    out.push_back(v.get<int64_t>());
  }
  return out;
}

std::string range_text(int64_t vocab_size) {
  return vocab_size > 0 ? "[0, " + std::to_string(vocab_size) + ")" : "[0, inf)";
}

}  // namespace

std::vector<Sample> load_tokenized(const std::string& path, int64_t max_length, int64_t vocab_size,
                                   int64_t max_positions) {
  LETHE_CHECK(max_length >= 2, "max_length must be at least 2 (BOS and one token), got ",
              max_length);
  LETHE_CHECK(vocab_size >= 0, "vocab_size must be >= 0 (0: no check), got ", vocab_size);
  const auto in_vocab = [&](int64_t id) { return id >= 0 && (vocab_size == 0 || id < vocab_size); };
  std::vector<Sample> samples;
  for_each_json_object(path, [&](const nlohmann::json& object, const std::string& source) {
    const auto ids_it = object.find("input_ids");
    LETHE_CHECK(ids_it != object.end(), source, ": field \"input_ids\": missing");
    Sample s;
    s.input_ids = int_list(*ids_it, source, "input_ids");
    LETHE_CHECK(!s.input_ids.empty(), source, ": field \"input_ids\": empty");
    for (size_t i = 0; i < s.input_ids.size(); ++i)
      LETHE_CHECK(in_vocab(s.input_ids[i]), source, ": field \"input_ids\": id ", s.input_ids[i],
                  " at index ", i, " is outside ", range_text(vocab_size));
    const auto labels_it = object.find("labels");
    if (labels_it == object.end() || labels_it->is_null()) {
      s.labels = s.input_ids;
    } else {
      s.labels = int_list(*labels_it, source, "labels");
      LETHE_CHECK(s.labels.size() == s.input_ids.size(), source,
                  ": field \"labels\": ", s.labels.size(), " values, input_ids has ",
                  s.input_ids.size());
      for (size_t i = 0; i < s.labels.size(); ++i)
        LETHE_CHECK(s.labels[i] == kIgnore || in_vocab(s.labels[i]), source,
                    ": field \"labels\": label ", s.labels[i], " at index ", i,
                    " is neither -100 nor in ", range_text(vocab_size));
    }
    const bool truncated = s.input_ids.size() > static_cast<size_t>(max_length);
    if (truncated) {
      s.input_ids.resize(static_cast<size_t>(max_length));
      s.labels.resize(static_cast<size_t>(max_length));
    }
    // The label at position 0 is never a target: HF's shift pairs position t with label t + 1.
    bool labelled = false;
    for (size_t i = 1; i < s.labels.size(); ++i) labelled = labelled || s.labels[i] != kIgnore;
    LETHE_CHECK(labelled, source, ": no token to predict (",
                s.input_ids.size() == 1 ? std::string("a row of one token has no target after the "
                                                      "shift")
                                        : "every label after the first is -100",
                truncated ? " after truncation to max_length " + std::to_string(max_length) : "",
                ")");
    LETHE_CHECK(max_positions <= 0 || static_cast<int64_t>(s.input_ids.size()) <= max_positions,
                source, ": ", s.input_ids.size(), " tokens, more than the model's ", max_positions,
                " positions (max_position_embeddings); lower data.max_length to ", max_positions);
    samples.push_back(std::move(s));
  });
  return samples;
}

}  // namespace lethe::trainers::data
