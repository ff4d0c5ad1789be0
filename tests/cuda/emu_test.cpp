// The CUDA emulator's own tests (kernels/cuda/emu): barriers, warp collectives and their mask
// checks, shared memory and its garbage fill, atomics, NVIDIA's half/bf16 in kernels, launch
// configuration errors, device memory, and cuBLAS's GEMM semantics against a double loop. Built
// only in the emulated tree (LETHE_CUDA=EMU); the kernels here are ordinary CUDA C++.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/emu/wmma.h"
#include "tests/common/compare.h"

namespace lethe::kernels {
namespace {

// ---- helpers ------------------------------------------------------------------------------------

template <typename T>
T* device_alloc(size_t n) {
  void* p = nullptr;
  EXPECT_EQ(cudaMalloc(&p, n * sizeof(T)), cudaSuccess);
  return static_cast<T*>(p);
}
template <typename T>
std::vector<T> to_host(const T* d, size_t n) {
  std::vector<T> h(n);
  EXPECT_EQ(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
  return h;
}
template <typename T>
T* to_device(const std::vector<T>& h) {
  T* d = device_alloc<T>(h.size());
  EXPECT_EQ(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  return d;
}

// Launches through the emulator directly (the error code, not lethe's exception).
template <typename... P, typename... A>
cudaError_t raw_launch(void (*k)(P...), dim3 g, dim3 b, size_t shared, A&&... args) {
  cudaGetLastError();
  return emu::launch_kernel("test kernel", k, g, b, shared, std::forward<A>(args)...);
}

// A kernel fault is sticky, as on a GPU: a test that provokes one clears it.
std::string fault_message(cudaError_t e) {
  std::string m = cudaGetErrorString(e);
  cudaDeviceReset();
  return m;
}

// ---- kernels ------------------------------------------------------------------------------------

// out[t] = what thread (t + 1) % n wrote to shared memory before the barrier.
__global__ void rotate_kernel(int* out, bool barrier) {
  LETHE_DYNAMIC_SHARED(raw);
  int* s = reinterpret_cast<int*>(raw);
  const int t = threadIdx.x, n = blockDim.x;
  s[t] = 1000 * blockIdx.x + t;
  if (barrier) __syncthreads();
  out[blockIdx.x * n + t] = s[(t + 1) % n];
}

// Odd threads leave before the barrier; the even ones must still pass it.
__global__ void early_exit_kernel(int* out) {
  __shared__ int seen[64];
  const int t = threadIdx.x;
  if (t & 1) return;
  seen[t] = t;
  __syncthreads();
  out[t] = seen[(t + 2) % 64] + 1;
}

__global__ void shuffle_kernel(int* out, int width) {
  const int t = threadIdx.x, v = 100 + t;
  out[0 * 64 + t] = __shfl_sync(0xffffffffu, v, 5, width);
  out[1 * 64 + t] = __shfl_up_sync(0xffffffffu, v, 3, width);
  out[2 * 64 + t] = __shfl_down_sync(0xffffffffu, v, 3, width);
  out[3 * 64 + t] = __shfl_xor_sync(0xffffffffu, v, 6, width);
  out[4 * 64 + t] = static_cast<int>(__ballot_sync(0xffffffffu, t % 3 == 0));
  out[5 * 64 + t] = __all_sync(0xffffffffu, t < 64);
  out[6 * 64 + t] = __any_sync(0xffffffffu, t == 40);
  __syncwarp();
  out[7 * 64 + t] =
      __shfl_sync(0xffffffffu, 1.5 * t, 31 - (t & 31)) == 1.5 * ((t & ~31) + 31 - (t & 31));
}

__global__ void bad_mask_kernel(int* out) {
  out[threadIdx.x] = __shfl_sync(0x1u, 1, 0);  // lanes 1..31 call with a mask that omits them
}

__global__ void divergent_shuffle_kernel(int* out) {
  if (threadIdx.x >= 16) return;  // lanes 16..31 leave, the mask still names them
  out[threadIdx.x] = __shfl_down_sync(0xffffffffu, 1, 1);
}

__global__ void half_warp_kernel(int* out) {
  // Width 16: lane 15's source (16) is past its segment, so it reads its own value. (With width
  // 32 it would read lane 16, outside the mask: undefined on a GPU, an error here.)
  if (threadIdx.x < 16) out[threadIdx.x] = __shfl_down_sync(0x0000ffffu, 10 + threadIdx.x, 1, 16);
}

__global__ void barrier_in_branch_kernel(int* out) {
  if (threadIdx.x < 32) {
    out[threadIdx.x] = __shfl_sync(0xffffffffu, 1, 0);
  } else {
    __syncthreads();  // warp 1 waits at the barrier while warp 0 is ... fine: warp 0 exits
    out[threadIdx.x] = 2;
  }
}

__global__ void deadlock_kernel(int* out) {
  // Lane 0 waits in a shuffle for lane 1, which waits at the block barrier for lane 0.
  if (threadIdx.x == 0)
    out[0] = __shfl_sync(0x3u, 1, 1);
  else if (threadIdx.x == 1)
    __syncthreads();
}

__global__ void read_before_write_kernel(unsigned* out) {
  LETHE_DYNAMIC_SHARED(raw);
  out[threadIdx.x] = reinterpret_cast<const unsigned*>(raw)[threadIdx.x];
}

__global__ void atomic_kernel(float* sum, unsigned long long* count, int* maxv, int64_t n) {
  for (int64_t i = global_index(); i < n; i += global_stride()) {
    atomicAdd(sum, 1.0f);
    atomicAdd(count, 1ull);
    atomicMax(maxv, static_cast<int>(i));
  }
}

__global__ void index_kernel(int* out) {
  const int x = threadIdx.x, y = threadIdx.y, z = threadIdx.z;
  const int tid = x + blockDim.x * (y + blockDim.y * z);
  const int block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  out[block * blockDim.x * blockDim.y * blockDim.z + tid] = block * 1000 + tid;
}

__global__ void half_kernel(const float* x, __half* h, __nv_bfloat16* b, float* back, int n) {
  const int i = threadIdx.x;
  if (i >= n) return;
  h[i] = __hadd(__float2half(x[i]), __float2half(1.0f));
  b[i] = __hmul(__float2bfloat16(x[i]), __float2bfloat16(2.0f));
  back[i] = __half2float(h[i]) + __bfloat162float(b[i]);
}

__global__ void noop_kernel(int) {}

__global__ void out_of_bounds_kernel(float* out, int n) {
  const int i = static_cast<int>(global_index());
  if (i <= n) out[i] = 1.0f;  // one element too far: i == n
}

// ---- barriers and shared memory -----------------------------------------------------------------

TEST(CudaEmulator, BarrierOrdersSharedMemoryAndARaceShows) {
  for (bool barrier : {true, false}) {
    int* out = device_alloc<int>(3 * 96);
    ASSERT_EQ(raw_launch(rotate_kernel, 3, 96, 96 * sizeof(int), out, barrier), cudaSuccess);
    std::vector<int> got = to_host(out, 3 * 96);
    int right = 0;
    for (int b = 0; b < 3; ++b)
      for (int t = 0; t < 96; ++t) right += got[b * 96 + t] == 1000 * b + (t + 1) % 96;
    if (barrier)
      EXPECT_EQ(right, 3 * 96);
    else  // without the barrier thread t reads its neighbour's slot before the neighbour ran
      EXPECT_LT(right, 3 * 96 / 2) << "the missing __syncthreads went unnoticed";
    cudaFree(out);
  }
}

TEST(CudaEmulator, ExitedThreadsCountAsArrivedAtABarrier) {
  int* out = device_alloc<int>(64);
  ASSERT_EQ(raw_launch(early_exit_kernel, 1, 64, 0, out), cudaSuccess);
  std::vector<int> got = to_host(out, 64);
  for (int t = 0; t < 64; t += 2) EXPECT_EQ(got[t], (t + 2) % 64 + 1) << t;
  cudaFree(out);
}

TEST(CudaEmulator, DynamicSharedMemoryStartsAsGarbage) {
  unsigned* out = device_alloc<unsigned>(32);
  ASSERT_EQ(raw_launch(read_before_write_kernel, 1, 32, 32 * sizeof(unsigned), out), cudaSuccess);
  for (unsigned v : to_host(out, 32)) EXPECT_EQ(v, 0xFFFFFFFFu);
  cudaFree(out);
}

TEST(CudaEmulator, ThreadAndBlockIndicesInThreeDimensions) {
  const dim3 grid(3, 2, 2), block(5, 3, 2);
  const int per = 30, blocks = 12;
  int* out = device_alloc<int>(per * blocks);
  ASSERT_EQ(raw_launch(index_kernel, grid, block, 0, out), cudaSuccess);
  std::vector<int> got = to_host(out, per * blocks);
  for (int b = 0; b < blocks; ++b)
    for (int t = 0; t < per; ++t) EXPECT_EQ(got[b * per + t], b * 1000 + t);
  cudaFree(out);
}

// ---- warp collectives ---------------------------------------------------------------------------

TEST(CudaEmulator, ShufflesBallotAllAnyFollowCudaSemantics) {
  for (int width : {32, 8}) {
    SCOPED_TRACE("width " + std::to_string(width));
    int* out = device_alloc<int>(8 * 64);
    ASSERT_EQ(raw_launch(shuffle_kernel, 1, 64, 0, out, width), cudaSuccess);
    std::vector<int> got = to_host(out, 8 * 64);
    for (int t = 0; t < 64; ++t) {
      const int lane = t & 31, warp_base = t & ~31, seg = lane / width * width;
      auto value = [&](int l) { return 100 + warp_base + l; };
      EXPECT_EQ(got[t], value(seg + 5 % width)) << "shfl " << t;
      EXPECT_EQ(got[64 + t], lane - 3 >= seg ? value(lane - 3) : value(lane)) << "up " << t;
      EXPECT_EQ(got[128 + t], lane + 3 < seg + width ? value(lane + 3) : value(lane))
          << "down " << t;
      const int x = lane ^ 6;
      EXPECT_EQ(got[192 + t], x < seg + width ? value(x) : value(lane)) << "xor " << t;
      unsigned ballot = 0;
      for (int l = 0; l < 32; ++l)
        if ((warp_base + l) % 3 == 0) ballot |= 1u << l;
      EXPECT_EQ(static_cast<unsigned>(got[256 + t]), ballot) << "ballot " << t;
      EXPECT_EQ(got[320 + t], 1) << "all " << t;
      EXPECT_EQ(got[384 + t], warp_base == 32 ? 1 : 0) << "any " << t;
      EXPECT_EQ(got[448 + t], 1) << "double shuffle " << t;
    }
    cudaFree(out);
  }
}

TEST(CudaEmulator, APartialMaskOfTheLanesThatCallIsFine) {
  int* out = device_alloc<int>(32);
  ASSERT_EQ(raw_launch(half_warp_kernel, 1, 32, 0, out), cudaSuccess);
  std::vector<int> got = to_host(out, 32);
  for (int l = 0; l < 15; ++l) EXPECT_EQ(got[l], 11 + l);
  EXPECT_EQ(got[15], 25);  // the last lane of the width reads its own value
  cudaFree(out);
}

TEST(CudaEmulator, WarpMisuseEndsTheLaunchWithAMessage) {
  int* out = device_alloc<int>(64);
  cudaError_t e = raw_launch(bad_mask_kernel, 1, 32, 0, out);
  EXPECT_EQ(e, cudaErrorLaunchFailure);
  EXPECT_NE(fault_message(e).find("does not name the calling lane"), std::string::npos);
  e = raw_launch(divergent_shuffle_kernel, 1, 32, 0, out);
  EXPECT_EQ(e, cudaErrorLaunchFailure);
  EXPECT_NE(fault_message(e).find("which has exited"), std::string::npos);
  e = raw_launch(deadlock_kernel, 1, 32, 0, out);
  EXPECT_EQ(e, cudaErrorLaunchFailure);
  EXPECT_NE(fault_message(e).find("deadlock"), std::string::npos);
  // A fault is sticky until reset, as on a GPU; then the device works again.
  e = raw_launch(bad_mask_kernel, 1, 32, 0, out);
  EXPECT_EQ(cudaMemset(out, 0, 4), cudaErrorLaunchFailure);
  cudaDeviceReset();
  EXPECT_EQ(raw_launch(barrier_in_branch_kernel, 1, 64, 0, out), cudaSuccess);
  std::vector<int> got = to_host(out, 64);
  EXPECT_EQ(got[0], 1);
  EXPECT_EQ(got[40], 2);
  cudaFree(out);
}

// ---- tensor cores (wmma) ------------------------------------------------------------------------

// D = A·B + C for one 16×16×16 tile per warp (2 warps, each its own tiles), A row-major or
// col-major, B col-major or row-major, C loaded and D stored in either layout.
template <typename T>
__global__ void wmma_kernel(const T* a, const T* b, const float* c, float* d, bool a_row,
                            bool b_row, bool c_row) {
  namespace wmma = nvcuda::wmma;
  const int w = threadIdx.x / 32;
  a += w * 256;
  b += w * 256;
  c += w * 256;
  d += w * 256;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::load_matrix_sync(acc, c, 16, c_row ? wmma::mem_row_major : wmma::mem_col_major);
  if (a_row && b_row) {
    wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> fb;
    wmma::load_matrix_sync(fa, a, 16);
    wmma::load_matrix_sync(fb, b, 16);
    wmma::mma_sync(acc, fa, fb, acc);
  } else {
    wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::col_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> fb;
    wmma::load_matrix_sync(fa, a, 16);
    wmma::load_matrix_sync(fb, b, 16);
    wmma::mma_sync(acc, fa, fb, acc);
  }
  wmma::store_matrix_sync(d, acc, 16, c_row ? wmma::mem_row_major : wmma::mem_col_major);
}

// A fragment loaded from a pointer that is not 32-byte aligned (undefined on a GPU).
__global__ void wmma_misaligned_kernel(const __nv_bfloat16* a) {
  nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 16, __nv_bfloat16, nvcuda::wmma::row_major>
      fa;
  nvcuda::wmma::load_matrix_sync(fa, a + 1, 16);
}

// Only half of the warp reaches the mma: the lanes of a warp-collective call must all make it.
__global__ void wmma_divergent_kernel(const __nv_bfloat16* a) {
  namespace wmma = nvcuda::wmma;
  if (threadIdx.x >= 16) return;
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
  wmma::load_matrix_sync(fa, a, 16);
}

TEST(CudaEmulator, WmmaMultipliesTilesAsAWarpCollective) {
  for (int variant = 0; variant < 3; ++variant) {
    const bool a_row = variant != 1, b_row = variant != 1, c_row = variant != 2;
    SCOPED_TRACE(variant);
    std::vector<float> af(512), bf(512), c(512);
    for (int i = 0; i < 512; ++i) {
      af[i] = static_cast<float>((i * 37) % 23) / 8.0f - 1.4f;
      bf[i] = static_cast<float>((i * 11) % 19) / 4.0f - 2.0f;
      c[i] = static_cast<float>(i % 7) - 3.0f;
    }
    std::vector<__nv_bfloat16> ab(512), bb(512);
    for (int i = 0; i < 512; ++i) {
      ab[i] = __float2bfloat16(af[i]);
      bb[i] = __float2bfloat16(bf[i]);
    }
    __nv_bfloat16* da = to_device(ab);
    __nv_bfloat16* db = to_device(bb);
    float* dc = to_device(c);
    float* dd = device_alloc<float>(512);
    ASSERT_EQ(
        raw_launch(wmma_kernel<__nv_bfloat16>, 1, 64, 0, static_cast<const __nv_bfloat16*>(da),
                   static_cast<const __nv_bfloat16*>(db), static_cast<const float*>(dc), dd, a_row,
                   b_row, c_row),
        cudaSuccess);
    const std::vector<float> d = to_host(dd, 512);
    auto at = [](int r, int col, bool row) { return row ? r * 16 + col : col * 16 + r; };
    double worst = 0;
    for (int w = 0; w < 2; ++w)
      for (int r = 0; r < 16; ++r)
        for (int col = 0; col < 16; ++col) {
          double want = c[w * 256 + at(r, col, c_row)];
          for (int k = 0; k < 16; ++k)
            want += static_cast<double>(__bfloat162float(ab[w * 256 + at(r, k, a_row)])) *
                    __bfloat162float(bb[w * 256 + at(k, col, b_row)]);
          worst = lethe::testing::nan_max(worst, std::fabs(d[w * 256 + at(r, col, c_row)] - want));
        }
    EXPECT_LE(worst, 1e-4);
    cudaFree(da);
    cudaFree(db);
    cudaFree(dc);
    cudaFree(dd);
  }
  __nv_bfloat16* a = device_alloc<__nv_bfloat16>(512);
  cudaError_t e =
      raw_launch(wmma_misaligned_kernel, 1, 32, 0, static_cast<const __nv_bfloat16*>(a));
  EXPECT_EQ(e, cudaErrorLaunchFailure);
  EXPECT_NE(fault_message(e).find("not 32-byte aligned"), std::string::npos);
  e = raw_launch(wmma_divergent_kernel, 1, 32, 0, static_cast<const __nv_bfloat16*>(a));
  EXPECT_EQ(e, cudaErrorLaunchFailure);
  const std::string m = fault_message(e);
  EXPECT_TRUE(m.find("exited") != std::string::npos || m.find("deadlock") != std::string::npos)
      << m;
  cudaFree(a);
}

// ---- atomics, half / bf16 ----------------------------------------------------------------------

TEST(CudaEmulator, AtomicsFromEveryThreadOfEveryBlock) {
  float* sum = to_device(std::vector<float>{0});
  unsigned long long* count = to_device(std::vector<unsigned long long>{0});
  int* maxv = to_device(std::vector<int>{-1});
  const int64_t n = 4097;
  ASSERT_EQ(raw_launch(atomic_kernel, 7, 128, 0, sum, count, maxv, n), cudaSuccess);
  EXPECT_EQ(to_host(sum, 1)[0], 4097.0f);
  EXPECT_EQ(to_host(count, 1)[0], 4097ull);
  EXPECT_EQ(to_host(maxv, 1)[0], 4096);
  cudaFree(sum);
  cudaFree(count);
  cudaFree(maxv);
}

TEST(CudaEmulator, HalfAndBf16ArithmeticIsNvidias) {
  const std::vector<float> x = {0.1f, -3.3f, 1000.7f, 1e-3f, 65000.0f, -0.0f, 3.14159f};
  const int n = static_cast<int>(x.size());
  float* dx = to_device(x);
  __half* h = device_alloc<__half>(x.size());
  __nv_bfloat16* b = device_alloc<__nv_bfloat16>(x.size());
  float* back = device_alloc<float>(x.size());
  ASSERT_EQ(raw_launch(half_kernel, 1, 32, 0, dx, h, b, back, n), cudaSuccess);
  std::vector<float> got = to_host(back, x.size());
  for (int i = 0; i < n; ++i) {
    // The same conversions on the host: the toolkit's headers, independent of the kernel.
    const float hh = __half2float(__float2half(__half2float(__float2half(x[i])) + 1.0f));
    const float bb =
        __bfloat162float(__float2bfloat16(__bfloat162float(__float2bfloat16(x[i])) * 2.0f));
    EXPECT_EQ(got[i], hh + bb) << x[i];
  }
  // bf16 keeps 8 significant bits: 3.14159 -> 3.140625 (round to nearest even).
  EXPECT_EQ(__bfloat162float(__float2bfloat16(3.14159f)), 3.140625f);
  cudaFree(dx);
  cudaFree(h);
  cudaFree(b);
  cudaFree(back);
}

// ---- launch configuration and memory ------------------------------------------------------------

TEST(CudaEmulator, BadLaunchConfigurationsGiveTheGpusErrors) {
  EXPECT_EQ(raw_launch(noop_kernel, 1, 1025, 0, 0), cudaErrorInvalidConfiguration);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);  // and cudaGetLastError says so
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);                    // once: not sticky
  EXPECT_EQ(raw_launch(noop_kernel, dim3(0), 32, 0, 0), cudaErrorInvalidConfiguration);
  EXPECT_EQ(raw_launch(noop_kernel, 1, dim3(1, 1, 65), 0, 0), cudaErrorInvalidConfiguration);
  EXPECT_EQ(raw_launch(noop_kernel, dim3(1, 65536), 32, 0, 0), cudaErrorInvalidConfiguration);
  EXPECT_EQ(raw_launch(noop_kernel, 1, 32, 48 * 1024 + 1, 0), cudaErrorInvalidValue);
  ASSERT_EQ(
      cudaFuncSetAttribute(noop_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 100 * 1024),
      cudaSuccess);
  EXPECT_EQ(raw_launch(noop_kernel, 1, 32, 100 * 1024, 0), cudaSuccess);
  EXPECT_EQ(
      cudaFuncSetAttribute(noop_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 300 * 1024),
      cudaErrorInvalidValue);
  // Through lethe's launch helper the error is a lethe::Error naming the kernel.
  try {
    launch("my_kernel", noop_kernel, 1, 2048, 0, 0);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("my_kernel"), std::string::npos) << m;
    EXPECT_NE(m.find("cudaErrorInvalidConfiguration"), std::string::npos) << m;
  }
}

TEST(CudaEmulator, DeviceMemoryIsExactGarbageFilledAndChecked) {
  unsigned char* p = device_alloc<unsigned char>(7);
  for (unsigned char c : to_host(p, 7)) EXPECT_EQ(c, 0xFF);
  std::vector<unsigned char> host(8, 1);
  // 8 bytes into a 7-byte block, and a host pointer where a device one belongs, are refused.
  EXPECT_EQ(cudaMemcpy(p, host.data(), 8, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(host.data(), host.data() + 1, 4, cudaMemcpyDeviceToHost),
            cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemset(host.data(), 0, 4), cudaErrorInvalidValue);
  EXPECT_EQ(cudaFree(host.data()), cudaErrorInvalidValue);
  cudaGetLastError();
  EXPECT_EQ(cudaMemcpy(p, host.data(), 7, cudaMemcpyHostToDevice), cudaSuccess);
  EXPECT_EQ(cudaFree(p), cudaSuccess);
  void* none = reinterpret_cast<void*>(1);
  EXPECT_EQ(cudaMalloc(&none, 0), cudaSuccess);
  EXPECT_EQ(none, nullptr);
}

// A kernel that writes one element past its cudaMalloc block: under AddressSanitizer (the
// emulated tree of `make test` builds kernels and this test with it) the report names the kernel
// and its source line.
TEST(CudaEmulator, AnOutOfBoundsKernelWriteIsReportedWithItsLine) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        float* out = device_alloc<float>(37);
        raw_launch(out_of_bounds_kernel, 2, 32, 0, out, 37);
      },
      "heap-buffer-overflow.*out_of_bounds_kernel.*emu_test\\.cpp:[0-9]+");
#else
  GTEST_SKIP() << "needs the AddressSanitizer build (LETHE_SANITIZE_CUDA)";
#endif
}

// ---- cuBLAS -------------------------------------------------------------------------------------

// Column-major C = alpha op(A) op(B) + beta C in double, per batch.
void reference_gemm(bool ta, bool tb, int m, int n, int k, double alpha,
                    const std::vector<double>& A, int lda, long long sa,
                    const std::vector<double>& B, int ldb, long long sb, double beta,
                    std::vector<double>& C, int ldc, long long sc, int batch) {
  for (int p = 0; p < batch; ++p)
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        double acc = 0;
        for (int l = 0; l < k; ++l) {
          const double a = ta ? A[p * sa + l + i * lda] : A[p * sa + i + l * lda];
          const double b = tb ? B[p * sb + j + l * ldb] : B[p * sb + l + j * ldb];
          acc += a * b;
        }
        double& c = C[p * sc + i + j * ldc];
        c = alpha * acc + (beta == 0 ? 0 : beta * c);
      }
}

TEST(CudaEmulator, CublasGemmStridedBatchedFollowsCublasSemantics) {
  cublasHandle_t h = nullptr;
  ASSERT_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
  struct Case {
    bool ta, tb;
    int m, n, k, batch;
    bool broadcast_a;
    double beta;
    cudaDataType type;
  };
  const Case cases[] = {{false, false, 5, 3, 7, 1, false, 0.0, CUDA_R_32F},
                        {true, false, 4, 6, 3, 3, false, 0.5, CUDA_R_32F},
                        {false, true, 1, 9, 2, 2, true, 0.0, CUDA_R_32F},
                        {true, true, 7, 1, 5, 2, false, -1.0, CUDA_R_64F},
                        {false, false, 6, 5, 33, 2, false, 0.0, CUDA_R_16BF}};
  for (const Case& c : cases) {
    SCOPED_TRACE(std::to_string(c.m) + "x" + std::to_string(c.n) + "x" + std::to_string(c.k));
    const int a_rows = c.ta ? c.k : c.m, a_cols = c.ta ? c.m : c.k;
    const int b_rows = c.tb ? c.n : c.k, b_cols = c.tb ? c.k : c.n;
    const int lda = a_rows + 2, ldb = b_rows + 1, ldc = c.m + 3;  // padded leading dims
    const long long sa = c.broadcast_a ? 0 : static_cast<long long>(lda) * a_cols + 5;
    const long long sb = static_cast<long long>(ldb) * b_cols + 1;
    const long long sc = static_cast<long long>(ldc) * c.n;
    const size_t na = static_cast<size_t>(c.broadcast_a ? lda * a_cols : sa * c.batch);
    const size_t nb = static_cast<size_t>(sb * c.batch), nc = static_cast<size_t>(sc * c.batch);
    std::vector<double> A(na), B(nb), C(nc);
    for (size_t i = 0; i < na; ++i) A[i] = std::sin(0.37 * i) * 2;
    for (size_t i = 0; i < nb; ++i) B[i] = std::cos(0.21 * i) * 3;
    for (size_t i = 0; i < nc; ++i) C[i] = c.beta == 0 ? std::nan("") : 0.1 * i;
    std::vector<double> want = C;
    std::vector<double> Ar = A, Br = B;
    if (c.type == CUDA_R_16BF)  // the operands as bf16 hold them
      for (auto* v : {&Ar, &Br})
        for (double& x : *v) x = __bfloat162float(__float2bfloat16(static_cast<float>(x)));
    reference_gemm(c.ta, c.tb, c.m, c.n, c.k, 1.25, Ar, lda, sa, Br, ldb, sb, c.beta, want, ldc, sc,
                   c.batch);
    const bool f64 = c.type == CUDA_R_64F;
    void *dA, *dB, *dC;
    auto upload_as = [&](const std::vector<double>& v, cudaDataType t) {
      void* d = nullptr;
      if (t == CUDA_R_64F) {
        d = to_device(v);
      } else if (t == CUDA_R_32F) {
        d = to_device(std::vector<float>(v.begin(), v.end()));
      } else {
        std::vector<__nv_bfloat16> b16(v.size());
        for (size_t i = 0; i < v.size(); ++i) b16[i] = __float2bfloat16(static_cast<float>(v[i]));
        d = to_device(b16);
      }
      return d;
    };
    dA = upload_as(A, c.type);
    dB = upload_as(B, c.type);
    dC = upload_as(C, f64 ? CUDA_R_64F : CUDA_R_32F);
    const double alpha64 = 1.25, beta64 = c.beta;
    const float alpha32 = 1.25f, beta32 = static_cast<float>(c.beta);
    ASSERT_EQ(cublasGemmStridedBatchedEx(
                  h, c.ta ? CUBLAS_OP_T : CUBLAS_OP_N, c.tb ? CUBLAS_OP_T : CUBLAS_OP_N, c.m, c.n,
                  c.k, f64 ? static_cast<const void*>(&alpha64) : &alpha32, dA, c.type, lda, sa, dB,
                  c.type, ldb, sb, f64 ? static_cast<const void*>(&beta64) : &beta32, dC,
                  f64 ? CUDA_R_64F : CUDA_R_32F, ldc, sc, c.batch,
                  f64 ? CUBLAS_COMPUTE_64F : CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              CUBLAS_STATUS_SUCCESS);
    std::vector<double> got(nc);
    if (f64) {
      got = to_host(static_cast<double*>(dC), nc);
    } else {
      std::vector<float> g = to_host(static_cast<float*>(dC), nc);
      got.assign(g.begin(), g.end());
    }
    for (int p = 0; p < c.batch; ++p)
      for (int j = 0; j < c.n; ++j)
        for (int i = 0; i < c.m; ++i) {
          const size_t at = static_cast<size_t>(p * sc + i + j * ldc);
          EXPECT_NEAR(got[at], want[at], (f64 ? 1e-12 : 2e-5) * (1 + std::fabs(want[at])))
              << "batch " << p << " (" << i << ", " << j << ")";
        }
    // Rows of C beyond m (the padding of ldc) are not touched.
    if (c.beta != 0) {
      const double before = C[static_cast<size_t>(c.m)];
      EXPECT_EQ(got[static_cast<size_t>(c.m)], f64 ? before : static_cast<float>(before));
    }
    // A leading dimension below the rows, and an A that reaches past its block, are refused.
    EXPECT_EQ(cublasGemmStridedBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_N, c.m, c.n, c.k, &alpha32, dA,
                                         CUDA_R_32F, c.m - 1 < 1 ? 0 : c.m - 1, 0, dB, CUDA_R_32F,
                                         std::max(c.k, 1), 0, &beta32, dC, CUDA_R_32F, ldc, 0, 1,
                                         CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              CUBLAS_STATUS_INVALID_VALUE);
    cudaFree(dA);
    cudaFree(dB);
    cudaFree(dC);
  }
  float* small = device_alloc<float>(4);
  const float one = 1, zero = 0;
  EXPECT_EQ(
      cublasGemmStridedBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 2, &one, small, CUDA_R_32F, 2,
                                 4, small, CUDA_R_32F, 2, 0, &zero, small, CUDA_R_32F, 2, 0, 2,
                                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
      CUBLAS_STATUS_EXECUTION_FAILED)
      << "a batch stride past the block's end";
  cudaFree(small);
  EXPECT_EQ(cublasDestroy(h), CUBLAS_STATUS_SUCCESS);
}

}  // namespace
}  // namespace lethe::kernels
