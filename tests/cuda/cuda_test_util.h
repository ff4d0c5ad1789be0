// Helpers for the CUDA backend tests: skip when no GPU is visible, device buffers with RAII.
// Tests only: never used by the engine.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "kernels/backend.h"

#ifdef LETHE_WITH_CUDA
#include "kernels/cuda/cuda_debug.h"
#endif

namespace lethe::testing {

// Whether a missing CUDA backend must fail the test instead of skipping it: LETHE_REQUIRE_CUDA=1
// (ctest sets it for the `cuda` label: the emulator's tree; tools/gpu_check.sh on a GPU), or
// LETHE_TEST_DEVICE=cuda.
inline bool cuda_required() {
  const char* v = std::getenv("LETHE_REQUIRE_CUDA");
  const char* d = std::getenv("LETHE_TEST_DEVICE");
  return (v != nullptr && std::string(v) == "1") || (d != nullptr && std::string(d) == "cuda");
}

// Skips the current test (with the reason) when the CUDA backend is unavailable, or fails it when
// CUDA is required.
#define LETHE_REQUIRE_CUDA(gpu_var)                                                      \
  ::lethe::kernels::Backend* gpu_var = ::lethe::kernels::cuda_backend();                 \
  if (gpu_var == nullptr) {                                                              \
    if (::lethe::testing::cuda_required())                                               \
      FAIL() << "LETHE_REQUIRE_CUDA=1: " << ::lethe::kernels::cuda_unavailable_reason(); \
    GTEST_SKIP() << ::lethe::kernels::cuda_unavailable_reason();                         \
  }                                                                                      \
  static_assert(true, "")

inline void set_poison(bool on) {
#ifdef LETHE_WITH_CUDA
  kernels::cuda_set_poison_allocations(on);
#else
  (void)on;
#endif
}

// A device buffer of `bytes`, freed through the same backend.
class DeviceBuffer {
 public:
  DeviceBuffer(kernels::Backend& be, size_t bytes) : be_(&be), bytes_(bytes) {
    ptr_ = bytes ? be.allocate(bytes) : nullptr;
  }
  ~DeviceBuffer() {
    if (ptr_) be_->deallocate(ptr_, bytes_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : be_(o.be_), ptr_(o.ptr_), bytes_(o.bytes_) {
    o.ptr_ = nullptr;
  }
  void* get() const { return ptr_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t bytes() const { return bytes_; }

 private:
  kernels::Backend* be_;
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

template <typename T>
DeviceBuffer upload(kernels::Backend& be, const std::vector<T>& host) {
  DeviceBuffer buf(be, host.size() * sizeof(T));
  if (!host.empty()) be.copy_from_host(buf.get(), host.data(), host.size() * sizeof(T));
  return buf;
}

template <typename T>
std::vector<T> download(kernels::Backend& be, const DeviceBuffer& buf, size_t n) {
  std::vector<T> host(n);
  if (n) be.copy_to_host(host.data(), buf.get(), n * sizeof(T));
  return host;
}

// A device buffer of n Ts filled with NaN (or all-ones bytes for integers): a kernel that leaves
// part of its output unwritten is caught.
template <typename T>
DeviceBuffer poisoned(kernels::Backend& be, size_t n) {
  std::vector<T> host(n);
  if constexpr (std::is_floating_point_v<T>) {
    for (T& v : host) v = std::numeric_limits<T>::quiet_NaN();
  } else {
    for (T& v : host) v = static_cast<T>(~T{});
  }
  return upload(be, host);
}

// sqrt(sum (a-b)^2 / sum b^2); NaN anywhere gives NaN (fails every <= check).
template <typename A, typename B>
double rel_error(const std::vector<A>& a, const std::vector<B>& b) {
  if (a.size() != b.size()) return std::numeric_limits<double>::infinity();
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    num += d * d;
    den += static_cast<double>(b[i]) * static_cast<double>(b[i]);
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

// Deterministic pseudo-random values in [lo, hi) (the CPU RNG; independent of the code under test
// on the device side).
inline std::vector<double> random_values(size_t n, uint64_t seed, double lo, double hi) {
  std::vector<double> v(n);
  if (n)
    kernels::cpu_backend().fill_uniform(DType::f64, v.data(), static_cast<int64_t>(n), seed, 0, lo,
                                        hi);
  return v;
}

template <typename T>
std::vector<T> random_as(size_t n, uint64_t seed, double lo, double hi) {
  std::vector<double> d = random_values(n, seed, lo, hi);
  return std::vector<T>(d.begin(), d.end());
}

}  // namespace lethe::testing
