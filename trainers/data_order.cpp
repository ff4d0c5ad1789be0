// See data_order.h.
#include "trainers/data_order.h"

#include <algorithm>
#include <numeric>

#include "engine/random.h"

namespace lethe::trainers {

namespace {

enum Stream : uint64_t { kShuffle = 1, kPairing = 2, kRandomAnswers = 3, kDropout = 4 };

std::vector<int64_t> permutation(int64_t n, uint64_t seed, int64_t epoch, bool shuffle) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), 0);
  if (!shuffle) return p;
  for (int64_t i = n - 1; i > 0; --i) {
    const int64_t j = static_cast<int64_t>(
        seeded_draw(seed, kShuffle, static_cast<uint64_t>(epoch), static_cast<uint64_t>(i)) %
        static_cast<uint64_t>(i + 1));
    std::swap(p[static_cast<size_t>(i)], p[static_cast<size_t>(j)]);
  }
  return p;
}

}  // namespace

uint64_t seeded_draw(uint64_t seed, uint64_t stream, uint64_t a, uint64_t b) {
  return splitmix64(splitmix64(splitmix64(seed ^ splitmix64(stream)) ^ a) ^ b);
}

DataOrder::DataOrder(const std::vector<data::Sample>& drive,
                     const std::vector<data::Sample>& retain, DataOrderOptions o)
    : drive_(drive), retain_(retain), o_(o) {
  gbatch_ = o_.batch * o_.ranks;
  per_epoch_ = (static_cast<int64_t>(drive_.size()) + gbatch_ - 1) / gbatch_;
}

int64_t DataOrder::global_rows(int64_t m) const {
  const int64_t n = static_cast<int64_t>(drive_.size()), j = m % per_epoch_;
  return std::max<int64_t>(0, std::min(n, (j + 1) * gbatch_) - j * gbatch_);
}

const data::Sample* DataOrder::forget_at(int64_t m, int64_t i) const {
  const int64_t epoch = m / per_epoch_, j = m % per_epoch_;
  if (epoch != cached_epoch_) {
    order_ = permutation(static_cast<int64_t>(drive_.size()), o_.seed, epoch, o_.shuffle);
    cached_epoch_ = epoch;
  }
  return &drive_[static_cast<size_t>(order_[static_cast<size_t>(j * gbatch_ + i)])];
}

int64_t DataOrder::retain_index(int64_t m, int64_t i, uint64_t stream) const {
  const int64_t n = static_cast<int64_t>(retain_.size());
  if (o_.sequential_pairing) return (m * gbatch_ + i) % n;
  return static_cast<int64_t>(
      seeded_draw(o_.seed, stream, static_cast<uint64_t>(m), static_cast<uint64_t>(i)) %
      static_cast<uint64_t>(n));
}

const data::Sample* DataOrder::retain_at(int64_t m, int64_t i) const {
  return &retain_[static_cast<size_t>(retain_index(m, i, kPairing))];
}

int64_t DataOrder::random_answer_index(int64_t m, int64_t slot) const {
  return retain_index(m, slot, kRandomAnswers);
}

std::vector<const data::Sample*> DataOrder::forget_batch(int64_t m) const {
  std::vector<const data::Sample*> out;
  const int64_t begin = o_.rank * o_.batch, end = std::min(global_rows(m), begin + o_.batch);
  for (int64_t i = begin; i < end; ++i) out.push_back(forget_at(m, i));
  return out;
}

std::vector<const data::Sample*> DataOrder::retain_batch(int64_t m, int64_t rows) const {
  std::vector<const data::Sample*> out;
  for (int64_t i = 0; i < rows; ++i) out.push_back(retain_at(m, o_.rank * o_.batch + i));
  return out;
}

int64_t DataOrder::longest(int64_t first, int64_t count, BatchKind kind) const {
  int64_t longest = 0;
  for (int64_t m = first; m < first + count; ++m)
    for (int64_t i = 0; i < global_rows(m); ++i) {
      const data::Sample* x = kind == BatchKind::forget ? forget_at(m, i) : retain_at(m, i);
      longest = std::max<int64_t>(longest, static_cast<int64_t>(x->input_ids.size()));
    }
  return longest;
}

uint64_t DataOrder::dropout_seed(int64_t m, BatchKind kind) const {
  return seeded_draw(o_.seed, kDropout, static_cast<uint64_t>(m), static_cast<uint64_t>(kind));
}

}  // namespace lethe::trainers
