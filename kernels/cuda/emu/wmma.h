// The CUDA emulator's tensor cores: nvcuda::wmma (mma.h's warp matrix API) for the .cu files
// compiled as C++. Fragments are warp-collective objects whose element-to-lane mapping CUDA leaves
// unspecified; here lane L holds elements [L·n, (L+1)·n) of the tile in row-major order (n =
// num_elements). load/store_matrix_sync move each lane's own elements and end in a __syncwarp;
// mma_sync is a warp collective — every lane deposits its A and B elements in the warp's scratch,
// then each computes its elements of D = A·B + C in f32 (products of bf16/f16 operands are exact
// in f32; the sum runs over k in order, which a tensor core need not). Misuse a GPU leaves
// undefined — a pointer not 32-byte aligned, a leading dimension not a multiple of 16 bytes —
// ends the kernel with an error. Shapes: m16n16k16 with __half or __nv_bfloat16 operands and
// float accumulators (what lethe's kernels use).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <string>
#include <type_traits>

#include "kernels/cuda/emu/cuda_emu.h"

namespace nvcuda::wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  static_assert(M == 16 && N == 16 && K == 16, "the emulator implements wmma m16n16k16 only");
  static constexpr int num_elements = 256 / 32;  // every use is a 16×16 tile here
  T x[num_elements];
};

namespace detail {

inline unsigned lane() {
  return ::lethe::emu::tls_thread->linear & 31;
}

template <typename T>
float widen(T v) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __bfloat162float(v);
  } else if constexpr (std::is_same_v<T, __half>) {
    return __half2float(v);
  } else {
    return static_cast<float>(v);
  }
}

template <typename T>
void check_operand(const T* p, unsigned ldm, const char* what) {
  if (reinterpret_cast<uintptr_t>(p) % 32 != 0)
    ::lethe::emu::kernel_misuse(std::string(what) + ": the pointer is not 32-byte aligned");
  if ((ldm * sizeof(T)) % 16 != 0)
    ::lethe::emu::kernel_misuse(std::string(what) + ": ldm " + std::to_string(ldm) +
                                " is not a multiple of 16 bytes");
}

// Row-major position of element e of this lane's share, and its address offset for a layout.
inline size_t offset(int e, unsigned ldm, bool row) {
  const int idx = static_cast<int>(lane()) * 8 + e, r = idx / 16, c = idx % 16;
  return row ? static_cast<size_t>(r) * ldm + c : static_cast<size_t>(c) * ldm + r;
}

}  // namespace detail

template <typename Use, int M, int N, int K, typename T, typename L>
void fill_fragment(fragment<Use, M, N, K, T, L>& f, T v) {
  for (T& x : f.x) x = v;
}

template <typename Use, int M, int N, int K, typename T, typename L>
void load_matrix_sync(fragment<Use, M, N, K, T, L>& f, const T* p, unsigned ldm) {
  static_assert(!std::is_same_v<Use, accumulator>, "an accumulator load needs a layout_t");
  detail::check_operand(p, ldm, "wmma::load_matrix_sync");
  const bool row = std::is_same_v<L, row_major>;
  for (int e = 0; e < 8; ++e) f.x[e] = p[detail::offset(e, ldm, row)];
  __syncwarp();
}

template <int M, int N, int K, typename T>
void load_matrix_sync(fragment<accumulator, M, N, K, T, void>& f, const T* p, unsigned ldm,
                      layout_t layout) {
  detail::check_operand(p, ldm, "wmma::load_matrix_sync");
  for (int e = 0; e < 8; ++e) f.x[e] = p[detail::offset(e, ldm, layout == mem_row_major)];
  __syncwarp();
}

template <int M, int N, int K, typename T>
void store_matrix_sync(T* p, const fragment<accumulator, M, N, K, T, void>& f, unsigned ldm,
                       layout_t layout) {
  detail::check_operand(p, ldm, "wmma::store_matrix_sync");
  for (int e = 0; e < 8; ++e) p[detail::offset(e, ldm, layout == mem_row_major)] = f.x[e];
  __syncwarp();
}

template <int M, int N, int K, typename TA, typename LA, typename LB>
void mma_sync(fragment<accumulator, M, N, K, float, void>& d,
              const fragment<matrix_a, M, N, K, TA, LA>& a,
              const fragment<matrix_b, M, N, K, TA, LB>& b,
              const fragment<accumulator, M, N, K, float, void>& c) {
  static_assert(std::is_same_v<TA, __nv_bfloat16> || std::is_same_v<TA, __half>,
                "the emulator's mma_sync takes bf16 or f16 operands");
  float* s = ::lethe::emu::wmma_scratch();  // [0, 256): A row-major, [256, 512): B row-major
  const unsigned l = detail::lane();
  __syncwarp();  // the previous mma_sync's reads of the scratch are done
  for (int e = 0; e < 8; ++e) {
    s[l * 8 + e] = detail::widen(a.x[e]);
    s[256 + l * 8 + e] = detail::widen(b.x[e]);
  }
  __syncwarp();
  float out[8];
  for (int e = 0; e < 8; ++e) {
    const int idx = static_cast<int>(l) * 8 + e, r = idx / 16, col = idx % 16;
    float acc = c.x[e];
    for (int k = 0; k < 16; ++k) acc += s[r * 16 + k] * s[256 + k * 16 + col];
    out[e] = acc;
  }
  for (int e = 0; e < 8; ++e) d.x[e] = out[e];
  __syncwarp();
}

}  // namespace nvcuda::wmma
