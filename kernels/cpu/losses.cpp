// CPU embedding, cross-entropy and KL (placeholder until implemented).
#include "kernels/cpu/cpu_backend.h"

namespace lethe::kernels {
void CpuBackend::embedding_forward(DType, int64_t, int64_t, const int64_t*, const void*, void*) { LETHE_FAIL("embedding_forward: not implemented"); }
void CpuBackend::embedding_backward(DType, int64_t, int64_t, const int64_t*, const void*, void*, int64_t) { LETHE_FAIL("embedding_backward: not implemented"); }
void CpuBackend::cross_entropy_forward(const CrossEntropyArgs&) { LETHE_FAIL("cross_entropy_forward: not implemented"); }
void CpuBackend::cross_entropy_backward(const CrossEntropyBackwardArgs&) { LETHE_FAIL("cross_entropy_backward: not implemented"); }
void CpuBackend::kl_div_forward(DType, int64_t, int64_t, const void*, const void*, void*) { LETHE_FAIL("kl_div_forward: not implemented"); }
void CpuBackend::kl_div_backward(DType, int64_t, int64_t, const void*, const void*, const void*, void*, void*) { LETHE_FAIL("kl_div_backward: not implemented"); }
}  // namespace lethe::kernels
