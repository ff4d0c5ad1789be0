// CPU rotary position embedding (RopeArgs in kernels/backend.h): one (b, h, t) row of D values per
// step, rows spread over threads.
#include <cmath>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/rope_math.h"

namespace lethe::kernels {

namespace {

template <typename T>
void rope_impl(const RopeArgs& a) {
  const int64_t half = a.head_dim / 2, rows = a.batch * a.heads * a.seq;
  const T* x = static_cast<const T*>(a.x);
  T* y = static_cast<T*>(a.y);
#pragma omp parallel for schedule(static) if (rows * a.head_dim > (1 << 15))
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t t = row % a.seq, b = row / (a.heads * a.seq);
    const int64_t pos = a.positions[b * a.seq + t];
    const T* xr = x + row * a.head_dim;
    T* yr = y + row * a.head_dim;
    for (int64_t i = 0; i < half; ++i) {
      T lo, hi;
      rope_math::rotate_pair<T>(a, pos, a.inv_freq[i], xr[i], xr[i + half], &lo, &hi);
      yr[i] = lo;
      yr[i + half] = hi;
    }
  }
}

}  // namespace

void CpuBackend::rope(const RopeArgs& a) {
  LETHE_CHECK(a.batch >= 0 && a.heads >= 0 && a.seq >= 0 && a.head_dim >= 0 && a.head_dim % 2 == 0,
              "rope: bad size B=", a.batch, " H=", a.heads, " T=", a.seq, " D=", a.head_dim,
              " (D must be even)");
  if (a.batch * a.heads * a.seq * a.head_dim == 0) return;
  dispatch_float(a.dtype, "rope", [&](auto tag) { rope_impl<decltype(tag)>(a); });
}

}  // namespace lethe::kernels
