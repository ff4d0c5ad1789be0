// Evaluation across the ranks of a data-parallel run (docs/distributed.md): rank r computes a
// contiguous block of the items (samples, prompts, texts), and the per-item results are gathered
// in rank order, so every rank holds all of them in the original order and computes the same
// aggregates. With one process the block is everything and nothing is sent.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "eval/scoring.h"

namespace lethe::eval {

struct Block {
  size_t begin = 0, end = 0;
};
// This rank's block of n items (dist::world()'s rank and size).
Block my_block(size_t n);

std::vector<double> gather_items(const std::vector<double>& mine);
std::vector<std::vector<double>> gather_items(const std::vector<std::vector<double>>& mine);
std::vector<std::vector<int64_t>> gather_items(const std::vector<std::vector<int64_t>>& mine);
std::vector<TokenStats> gather_items(const std::vector<TokenStats>& mine);

// The items of [begin, end) of `all`.
template <typename T>
std::vector<T> block_of(const std::vector<T>& all, Block b) {
  return std::vector<T>(all.begin() + static_cast<std::ptrdiff_t>(b.begin),
                        all.begin() + static_cast<std::ptrdiff_t>(b.end));
}

}  // namespace lethe::eval
