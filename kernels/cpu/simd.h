// simd.h — what lets the CPU kernels' row loops vectorise: a branch-free float exp, an attribute
// that also compiles a hot function for AVX2 (picked at load time), and no-trapping-math for the
// including file so float selects become blends. Include it FIRST in a kernels/cpu/*.cpp (the
// pragma must precede every function it should cover); never include it from a header.
#pragma once

#if defined(__GNUC__) && !defined(__clang__)
// Without this GCC keeps `c ? a : b` on floats as branches (a compare may trap), and a loop with
// branches does not vectorise. Placed before all other includes of the file so inline library
// functions share the setting (GCC does not inline across a trapping-math mismatch).
#pragma GCC optimize("no-trapping-math")
#endif

#include <bit>
#include <cmath>
#include <cstdint>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
// An AVX2 copy of the function next to the baseline (SSE2) one, chosen once by the dynamic loader.
#define LETHE_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#define LETHE_ALWAYS_INLINE __attribute__((always_inline)) inline
#else
#define LETHE_SIMD_CLONES
#define LETHE_ALWAYS_INLINE inline
#endif

namespace lethe::kernels {

// exp(x) in f32 to ~1 ulp with no libm call, so loops around it vectorise: e^x = 2^n e^r with
// n = round(x / ln 2), |r| <= ln(2)/2 and a degree-7 Taylor polynomial for e^r. Returns 0 for
// x < -87.33 (including -inf) and +inf above ~88.7; NaN stays NaN.
LETHE_ALWAYS_INLINE float exp_f32(float x) {
  constexpr float kLow = -87.33f, kHigh = 88.72f;
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  float xc = x < kLow ? kLow : x;
  xc = xc > kHigh ? kHigh : xc;
  const float shifted = xc * 1.44269504088896341f + kMagic;
  const float n = shifted - kMagic;
  const float r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;  // ln 2 split in two parts
  float p = 1.0f / 5040;
  p = p * r + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // The integer n sits in the low mantissa bits of `shifted`; move n + 127 into the exponent.
  const uint32_t bits = (std::bit_cast<uint32_t>(shifted) - std::bit_cast<uint32_t>(kMagic) + 127u)
                        << 23;
  const float y = p * std::bit_cast<float>(bits);
  return x < kLow ? 0.0f : y;
}

// The kernels' exp: the polynomial for f32, libm for f64 (gradient checks want full precision).
template <typename T>
LETHE_ALWAYS_INLINE T exp_fast(T x) {
  if constexpr (sizeof(T) == 4) {
    return exp_f32(x);
  } else {
    return std::exp(x);
  }
}

}  // namespace lethe::kernels
