// Collation into right-padded micro-batches with shifted targets.
#include "trainers/batch.h"

#include <algorithm>

#include "engine/error.h"

namespace lethe::trainers {

int64_t MicroBatch::tokens() const {
  int64_t n = 0;
  for (int64_t a : answer_tokens) n += a;
  return n;
}

int64_t MicroBatch::rows_with_answer() const {
  return static_cast<int64_t>(
      std::count_if(answer_tokens.begin(), answer_tokens.end(), [](int64_t a) { return a > 0; }));
}

void for_each_range(size_t n, int64_t batch_size,
                    const std::function<void(size_t begin, size_t end)>& fn, size_t first,
                    size_t stride) {
  LETHE_CHECK(batch_size >= 1 && stride >= 1, "batching: batch size ", batch_size, ", stride ",
              stride);
  const size_t b = static_cast<size_t>(batch_size);
  for (size_t i = first * b; i < n; i += b * stride) fn(i, std::min(n, i + b));
}

void for_each_batch(const std::vector<data::Sample>& samples, int64_t batch_size, int64_t pad_id,
                    const std::function<void(const MicroBatch&, size_t first)>& fn, size_t first,
                    size_t stride) {
  for_each_range(
      samples.size(), batch_size,
      [&](size_t begin, size_t end) {
        std::vector<const data::Sample*> ptrs;
        for (size_t j = begin; j < end; ++j) ptrs.push_back(&samples[j]);
        fn(collate(ptrs, pad_id), begin);
      },
      first, stride);
}

MicroBatch collate(const std::vector<const data::Sample*>& samples, int64_t pad_id,
                   int64_t min_length) {
  LETHE_CHECK(!samples.empty(), "collate: no samples");
  LETHE_CHECK(pad_id >= 0, "collate: the model has no pad token id (config.json pad_token_id)");
  size_t T = 0;
  for (const data::Sample* s : samples) {
    LETHE_CHECK(!s->input_ids.empty() && s->input_ids.size() == s->labels.size(),
                "collate: a sample has ", s->input_ids.size(), " input ids and ", s->labels.size(),
                " labels");
    T = std::max(T, s->input_ids.size());
  }
  T = std::max(T, static_cast<size_t>(std::max<int64_t>(0, min_length)));
  const size_t B = samples.size();
  std::vector<int64_t> ids(B * T, pad_id), mask(B * T, 0), targets(B * T, -100);
  MicroBatch mb;
  mb.answer_tokens.assign(B, 0);
  for (size_t b = 0; b < B; ++b) {
    const data::Sample& s = *samples[b];
    mb.classes.push_back(s.class_label);
    for (size_t t = 0; t < s.input_ids.size(); ++t) {
      ids[b * T + t] = s.input_ids[t];
      mask[b * T + t] = 1;
      if (t > 0 && s.labels[t] != -100) {
        targets[b * T + t - 1] = s.labels[t];
        ++mb.answer_tokens[b];
      }
    }
  }
  const Shape shape{static_cast<int64_t>(B), static_cast<int64_t>(T)};
  mb.ids = Tensor::from_vector(ids, shape, DType::i64);
  mb.mask = Tensor::from_vector(mask, shape, DType::i64);
  mb.targets = Tensor::from_vector(targets, shape, DType::i64);
  return mb;
}

std::vector<int64_t> sample_prompt(const data::Sample& s) {
  std::vector<int64_t> out;
  for (size_t t = 0; t < s.labels.size() && s.labels[t] == -100; ++t) out.push_back(s.input_ids[t]);
  return out;
}

std::vector<int64_t> sample_answer(const data::Sample& s) {
  std::vector<int64_t> out;
  for (size_t t = 0; t < s.labels.size(); ++t)
    if (s.labels[t] != -100) out.push_back(s.input_ids[t]);
  return out;
}

}  // namespace lethe::trainers
