// Counter-based random numbers shared by every backend: value i depends only on (seed, counter),
// so CPU and CUDA draw the same streams and any slice can be generated independently.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define LETHE_HD __host__ __device__ __forceinline__
#else
#define LETHE_HD inline
#endif

namespace lethe::kernels::rng {

// A strong 64-bit mix (splitmix64's finaliser) of the seed and the counter.
LETHE_HD uint64_t hash(uint64_t seed, uint64_t counter) {
  uint64_t z =
      seed * 0x9E3779B97F4A7C15ull + counter * 0xD1B54A32D192ED03ull + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Uniform in [0, 1) with 53 random bits.
LETHE_HD double uniform(uint64_t seed, uint64_t counter) {
  return static_cast<double>(hash(seed, counter) >> 11) * (1.0 / 9007199254740992.0);
}

// Inverted dropout with probability p keeps element `counter` iff uniform(seed, counter) >= p; as
// an integer test on the 53 random bits: bits >= ceil(p · 2^53) (exact: p · 2^53 is a double).
LETHE_HD uint64_t dropout_threshold(double p) {
  return static_cast<uint64_t>(ceil(p * 9007199254740992.0));
}
LETHE_HD bool dropout_keeps(uint64_t seed, uint64_t counter, uint64_t threshold) {
  return (hash(seed, counter) >> 11) >= threshold;
}

}  // namespace lethe::kernels::rng
