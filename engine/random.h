// splitmix64: the stateless 64-bit mix behind every seeded draw above the kernels (data order,
// pairing, dropout seeds, sampling in generation), so a draw is a pure function of its inputs and
// a resumed or data-parallel run draws what one uninterrupted process draws.
#pragma once

#include <cstdint>

namespace lethe {

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace lethe
