// CUDA rotary position embedding (RopeArgs in kernels/backend.h): one thread per (row, i) pair of
// rotate_half, the math shared with the CPU backend (kernels/rope_math.h), so both give the same
// angles; cos and sin are the full-precision device functions.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/rope_math.h"

namespace lethe::kernels {

namespace {

template <typename T>
__global__ void rope_kernel(RopeArgs a) {
  const int64_t half = a.head_dim / 2, n = a.batch * a.heads * a.seq * half;
  const T* x = static_cast<const T*>(a.x);
  T* y = static_cast<T*>(a.y);
  for (int64_t e = global_index(); e < n; e += global_stride()) {
    const int64_t row = e / half, i = e % half;
    const int64_t t = row % a.seq, b = row / (a.heads * a.seq);
    const T* xr = x + row * a.head_dim;
    T* yr = y + row * a.head_dim;
    const T x_lo = xr[i], x_hi = xr[i + half];  // read both before writing (in place)
    T lo, hi;
    rope_math::rotate_pair<T>(a, a.positions[b * a.seq + t], a.inv_freq[i], x_lo, x_hi, &lo, &hi);
    yr[i] = lo;
    yr[i + half] = hi;
  }
}

}  // namespace

void CudaBackend::rope(const RopeArgs& a) {
  LETHE_CHECK(a.batch >= 0 && a.heads >= 0 && a.seq >= 0 && a.head_dim >= 0 && a.head_dim % 2 == 0,
              "rope: bad size B=", a.batch, " H=", a.heads, " T=", a.seq, " D=", a.head_dim,
              " (D must be even)");
  const int64_t n = a.batch * a.heads * a.seq * (a.head_dim / 2);
  if (n == 0) return;
  cuda_dispatch_float(a.dtype, "rope", [&](auto tag) {
    using T = decltype(tag);
    launch("rope", rope_kernel<T>, grid_for(n), kThreads, 0, a);
  });
}

}  // namespace lethe::kernels
