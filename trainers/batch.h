// Micro-batches: samples right-padded into ids / attention mask / shifted targets, with the item
// counts the losses normalise by. No model and no loss math here.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "engine/tensor.h"
#include "trainers/data/dataset.h"

namespace lethe::trainers {

struct MicroBatch {
  Tensor ids;      // i64 [B, T], right-padded with the pad id
  Tensor mask;     // i64 [B, T], 1 on real tokens
  Tensor targets;  // i64 [B, T]: labels shifted left by one, -100 where not a target
  std::vector<int64_t> answer_tokens;  // per row: targets != -100
  // Per row: the sample's class (sequence classification), -1 for a language-modelling sample.
  std::vector<int64_t> classes;
  int64_t rows() const { return ids.defined() ? ids.size(0) : 0; }
  int64_t length() const { return ids.defined() ? ids.size(1) : 0; }
  int64_t tokens() const;            // Σ answer_tokens
  int64_t rows_with_answer() const;  // rows with answer_tokens > 0
};

// Pads `samples` (at least one, each with input_ids.size() == labels.size() >= 1) on the right
// with pad_id to the longest sample, or to `min_length` when that is longer; labels -100 on
// padding; then shifts the labels (targets[t] = labels[t+1]).
MicroBatch collate(const std::vector<const data::Sample*>& samples, int64_t pad_id,
                   int64_t min_length = 0);

// The batching loop of every pass over n items (samples, prompts, texts): fn gets the index range
// [begin, end) of each batch of `batch_size` consecutive items, in order, the last one shorter
// when batch_size does not divide n; with `stride` > 1 only batches first, first + stride, … (a
// rank's share).
void for_each_range(size_t n, int64_t batch_size,
                    const std::function<void(size_t begin, size_t end)>& fn, size_t first = 0,
                    size_t stride = 1);

// The same over a set of samples (evaluation, scoring): each batch collated with pad_id. fn gets
// the batch and the index of its first sample.
void for_each_batch(const std::vector<data::Sample>& samples, int64_t batch_size, int64_t pad_id,
                    const std::function<void(const MicroBatch&, size_t first)>& fn,
                    size_t first = 0, size_t stride = 1);

// The prompt of a sample (its ids before the first labelled position) and its answer (the ids at
// labelled positions), for building mismatched (prompt, random answer) pairs.
std::vector<int64_t> sample_prompt(const data::Sample& s);
std::vector<int64_t> sample_answer(const data::Sample& s);

}  // namespace lethe::trainers
