// The CUDA emulator, device side: what a kernel sees when lethe's .cu files are compiled as plain
// C++ (the `emu` build, LETHE_CUDA_EMULATED). kernels/cuda/cuda_common.cuh includes this after the
// toolkit's cuda_runtime.h, so types, half/bf16 arithmetic and every runtime signature stay
// NVIDIA's; the kernel sources themselves are the ones nvcc compiles. How it runs: README.md.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

namespace lethe::emu {

// One emulated CUDA thread and the block it belongs to, as the running fiber sees them.
struct ThreadState {
  uint3 thread_idx;
  unsigned linear;  // x + y * blockDim.x + z * blockDim.x * blockDim.y
};
struct BlockState {
  uint3 block_idx;
  dim3 block_dim;
  dim3 grid_dim;
  unsigned char* dynamic_shared;  // this launch's dynamic shared memory (garbage-filled)
};
extern thread_local ThreadState* tls_thread;
extern thread_local BlockState* tls_block;

// Whether [p, p + bytes) lies inside one live cudaMalloc block (the emulated cuBLAS and NCCL
// check their operands with it).
bool inside_allocation(const void* p, size_t bytes);

// Ends the running kernel with `what` (named with its block and thread), as a fault on a GPU.
[[noreturn]] void kernel_misuse(const std::string& what);

// The calling warp's scratch for the emulated tensor cores (wmma.h): 16×16 A and B as floats.
float* wmma_scratch();

// This launch's dynamic shared memory (LETHE_DYNAMIC_SHARED in kernels/cuda/cuda_common.cuh).
unsigned char* dynamic_shared_memory();

// __syncthreads: waits until every thread of the block that has not exited arrives.
void sync_block();

// The warp-collective intrinsics. Every lane named in `mask` must make the same call (same op,
// mask and width); each deposits `value` and `arg` (source lane, delta or xor mask) and gets its
// result once the last one arrives. Misuse ends the launch with an error naming the lanes.
enum class WarpOp : int { sync, shfl, shfl_up, shfl_down, shfl_xor, ballot, all, any };
uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t value, int arg, int width);

// Runs body(ctx) once per thread of grid x block, blocks one after another; the configuration is
// checked as a GPU would (the error is also what cudaGetLastError returns next).
using KernelBody = void (*)(void* ctx);
cudaError_t launch(const char* name, const void* kernel, dim3 grid, dim3 block, size_t shared,
                   KernelBody body, void* ctx);

// kernel<<<grid, block, shared>>>(args...): the arguments are converted to the kernel's parameter
// types once, and every thread gets its own copy of them, as every GPU thread reads its own.
template <typename... P, typename... A>
cudaError_t launch_kernel(const char* name, void (*kernel)(P...), dim3 grid, dim3 block,
                          size_t shared, A&&... args) {
  struct Call {
    void (*fn)(P...);
    std::tuple<std::decay_t<P>...> params;
  };
  Call call{kernel, std::tuple<std::decay_t<P>...>(std::forward<A>(args)...)};
  return launch(
      name, reinterpret_cast<const void*>(kernel), grid, block, shared,
      [](void* ctx) {
        auto* c = static_cast<Call*>(ctx);
        std::apply(c->fn, c->params);
      },
      &call);
}

template <typename T>
T warp_exchange(WarpOp op, unsigned mask, T v, int arg, int width) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>,
                "warp shuffles move values of at most 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  bits = warp_collective(op, mask, bits, arg, width);
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}

}  // namespace lethe::emu

// nvcc's cuda_runtime.h takes a kernel itself here; host compilers see only the const void* form.
template <typename... P>
cudaError_t cudaFuncSetAttribute(void (*kernel)(P...), cudaFuncAttribute attr, int value) {
  return ::cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), attr, value);
}

// ---- built-in variables ------------------------------------------------------------------------
#define threadIdx (::lethe::emu::tls_thread->thread_idx)
#define blockIdx (::lethe::emu::tls_block->block_idx)
#define blockDim (::lethe::emu::tls_block->block_dim)
#define gridDim (::lethe::emu::tls_block->grid_dim)

// Static __shared__ arrays: one per host thread, i.e. one per block, since blocks run in turn.
#undef __shared__
#define __shared__ static thread_local

// ---- barriers and warp collectives -------------------------------------------------------------
inline void __syncthreads() {
  ::lethe::emu::sync_block();
}
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  ::lethe::emu::warp_collective(::lethe::emu::WarpOp::sync, mask, 0, 0, 32);
}
template <typename T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = 32) {
  return ::lethe::emu::warp_exchange(::lethe::emu::WarpOp::shfl, mask, var, src_lane, width);
}
template <typename T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32) {
  return ::lethe::emu::warp_exchange(::lethe::emu::WarpOp::shfl_up, mask, var,
                                     static_cast<int>(delta), width);
}
template <typename T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32) {
  return ::lethe::emu::warp_exchange(::lethe::emu::WarpOp::shfl_down, mask, var,
                                     static_cast<int>(delta), width);
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32) {
  return ::lethe::emu::warp_exchange(::lethe::emu::WarpOp::shfl_xor, mask, var, lane_mask, width);
}
inline unsigned __ballot_sync(unsigned mask, int predicate) {
  return static_cast<unsigned>(
      ::lethe::emu::warp_collective(::lethe::emu::WarpOp::ballot, mask, predicate != 0, 0, 32));
}
inline int __all_sync(unsigned mask, int predicate) {
  return static_cast<int>(
      ::lethe::emu::warp_collective(::lethe::emu::WarpOp::all, mask, predicate != 0, 0, 32));
}
inline int __any_sync(unsigned mask, int predicate) {
  return static_cast<int>(
      ::lethe::emu::warp_collective(::lethe::emu::WarpOp::any, mask, predicate != 0, 0, 32));
}
inline void __threadfence() {
  std::atomic_thread_fence(std::memory_order_seq_cst);
}
inline void __threadfence_block() {
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

// ---- atomics -----------------------------------------------------------------------------------
template <typename T>
T lethe_emu_atomic_add(T* address, T value) {
  return std::atomic_ref<T>(*address).fetch_add(value);
}
inline float atomicAdd(float* a, float v) {
  return lethe_emu_atomic_add(a, v);
}
inline double atomicAdd(double* a, double v) {
  return lethe_emu_atomic_add(a, v);
}
inline int atomicAdd(int* a, int v) {
  return lethe_emu_atomic_add(a, v);
}
inline unsigned atomicAdd(unsigned* a, unsigned v) {
  return lethe_emu_atomic_add(a, v);
}
inline unsigned long long atomicAdd(unsigned long long* a, unsigned long long v) {
  return lethe_emu_atomic_add(a, v);
}
template <typename T>
T atomicExch(T* a, T v) {
  return std::atomic_ref<T>(*a).exchange(v);
}
template <typename T>
T atomicCAS(T* a, T compare, T v) {
  std::atomic_ref<T>(*a).compare_exchange_strong(compare, v);
  return compare;  // the old value either way
}
template <typename T>
T atomicMax(T* a, T v) {
  std::atomic_ref<T> r(*a);
  T old = r.load();
  while (old < v && !r.compare_exchange_weak(old, v)) {
  }
  return old;
}
template <typename T>
T atomicMin(T* a, T v) {
  std::atomic_ref<T> r(*a);
  T old = r.load();
  while (v < old && !r.compare_exchange_weak(old, v)) {
  }
  return old;
}

// ---- arithmetic intrinsics: IEEE round-to-nearest on the host (the .cu files are compiled with
// -ffp-contract=off here, so nothing is fused into an FMA behind the kernel's back). Fast
// intrinsics (__expf, ...) are exact here: a limit the README states.
inline float __fadd_rn(float a, float b) {
  return a + b;
}
inline float __fsub_rn(float a, float b) {
  return a - b;
}
inline float __fmul_rn(float a, float b) {
  return a * b;
}
inline float __fdiv_rn(float a, float b) {
  return a / b;
}
inline float __fsqrt_rn(float a) {
  return std::sqrt(a);
}
inline float __fmaf_rn(float a, float b, float c) {
  return std::fma(a, b, c);
}
inline double __dadd_rn(double a, double b) {
  return a + b;
}
inline double __dsub_rn(double a, double b) {
  return a - b;
}
inline double __dmul_rn(double a, double b) {
  return a * b;
}
inline double __ddiv_rn(double a, double b) {
  return a / b;
}
inline double __fma_rn(double a, double b, double c) {
  return std::fma(a, b, c);
}
inline float __expf(float x) {
  return std::exp(x);
}
inline float __logf(float x) {
  return std::log(x);
}
inline float __fdividef(float a, float b) {
  return a / b;
}
inline float rsqrtf(float x) {
  return 1.0f / std::sqrt(x);
}
inline double rsqrt(double x) {
  return 1.0 / std::sqrt(x);
}
inline float __saturatef(float x) {
  return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x);  // NaN -> 0 as on the GPU
}
inline unsigned __float_as_uint(float x) {
  return std::bit_cast<unsigned>(x);
}
inline float __uint_as_float(unsigned x) {
  return std::bit_cast<float>(x);
}
inline int __float_as_int(float x) {
  return std::bit_cast<int>(x);
}
inline float __int_as_float(int x) {
  return std::bit_cast<float>(x);
}
inline long long __double_as_longlong(double x) {
  return std::bit_cast<long long>(x);
}
inline double __longlong_as_double(long long x) {
  return std::bit_cast<double>(x);
}
inline int __popc(unsigned x) {
  return std::popcount(x);
}
inline int __clz(unsigned x) {
  return std::countl_zero(x);
}
inline int __ffs(unsigned x) {
  return x ? std::countr_zero(x) + 1 : 0;
}
template <typename T>
T __ldg(const T* p) {
  return *p;
}
