// The rotary embedding's per-element math, shared by the CPU and CUDA backends so both compute
// the same numbers: the angle θ = position · inv_freq in the data's type (f32 for f32 rows, as
// transformers builds its cos/sin tables in float32) and the rotate_half pairing (i, i + D/2).
#pragma once

#include <math.h>

#include <cmath>
#include <cstdint>

#include "kernels/backend.h"

#if defined(__CUDACC__)
#define LETHE_ROPE_HD __host__ __device__ __forceinline__
#else
#define LETHE_ROPE_HD inline
#endif

namespace lethe::kernels::rope_math {

// y[i], y[i + D/2] from x[i], x[i + D/2] at angle position · f (both pairs of one (b, h, t) row).
template <typename T>
LETHE_ROPE_HD void rotate_pair(const RopeArgs& a, int64_t position, float f, T x_lo, T x_hi,
                               T* y_lo, T* y_hi) {
  const T theta = static_cast<T>(position) * static_cast<T>(f);
  const T scale = static_cast<T>(a.attention_scaling);
  T c, s;
  if constexpr (sizeof(T) == sizeof(float)) {
    c = cosf(theta);
    s = sinf(theta);
  } else {
    c = ::cos(theta);
    s = ::sin(theta);
  }
  if (a.attention_scaling != 1.0) {
    c *= scale;
    s *= scale;
  }
  if (a.inverse) s = -s;
  *y_lo = x_lo * c - x_hi * s;
  *y_hi = x_hi * c + x_lo * s;
}

}  // namespace lethe::kernels::rope_math
