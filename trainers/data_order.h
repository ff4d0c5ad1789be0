// Which samples each micro-batch of a run holds: the epoch order of the forget (or training) set,
// each rank's slice of a global micro-batch, the retain samples paired with it, and the seeds of
// dropout — every draw a pure function of (seed, stream, indices), so a resumed run and N ranks
// see what one uninterrupted process sees (docs/training.md, docs/distributed.md). No model and no
// loss here.
#pragma once

#include <cstdint>
#include <vector>

#include "trainers/methods/method.h"

namespace lethe::trainers {

// splitmix64 over (seed, stream, a, b).
uint64_t seeded_draw(uint64_t seed, uint64_t stream, uint64_t a, uint64_t b = 0);

struct DataOrderOptions {
  uint64_t seed = 0;
  bool shuffle = true;              // data.shuffle
  bool sequential_pairing = false;  // data.pairing: sequential
  int64_t batch = 1;                // samples per rank per micro-batch
  int rank = 0, ranks = 1;
  int64_t max_length = 1 << 20;  // data.max_length capped by the model's positions
};

class DataOrder : public BatchAccess {
 public:
  DataOrder(const std::vector<data::Sample>& drive, const std::vector<data::Sample>& retain,
            DataOrderOptions o);

  int64_t micro_batches_per_epoch() const { return per_epoch_; }
  int64_t global_batch() const override { return gbatch_; }
  int64_t max_length() const override { return o_.max_length; }
  const std::vector<data::Sample>& retain() const override { return retain_; }
  int64_t random_answer_index(int64_t m, int64_t slot) const override;

  // Rows of global micro-batch m (the epoch's last may be short).
  int64_t global_rows(int64_t m) const;
  // The i-th sample of global micro-batch m, and the retain sample paired with it.
  const data::Sample* forget_at(int64_t m, int64_t i) const;
  const data::Sample* retain_at(int64_t m, int64_t i) const;
  // This rank's slice [rank·batch, (rank+1)·batch) of global micro-batch m, and its retain rows.
  std::vector<const data::Sample*> forget_batch(int64_t m) const;
  std::vector<const data::Sample*> retain_batch(int64_t m, int64_t rows) const;
  // The longest forget or retain sample of micro-batches [first, first + count), every rank's
  // slice included.
  int64_t longest(int64_t first, int64_t count, BatchKind kind) const;
  // The dropout seed of micro-batch m's forward on a batch kind.
  uint64_t dropout_seed(int64_t m, BatchKind kind) const;

 private:
  int64_t retain_index(int64_t m, int64_t i, uint64_t stream) const;
  const std::vector<data::Sample>& drive_;
  const std::vector<data::Sample>& retain_;
  DataOrderOptions o_;
  int64_t gbatch_ = 1, per_epoch_ = 1;
  mutable int64_t cached_epoch_ = -1;  // the epoch whose order is in order_
  mutable std::vector<int64_t> order_;
};

}  // namespace lethe::trainers
