// CPU layernorm and softmax (placeholder until implemented).
#include "kernels/cpu/cpu_backend.h"

namespace lethe::kernels {
void CpuBackend::layernorm_forward(DType, int64_t, int64_t, const void*, const void*, const void*,
                                   double, void*, float*, float*) { LETHE_FAIL("layernorm_forward: not implemented"); }
void CpuBackend::layernorm_backward(DType, int64_t, int64_t, const void*, const void*, const float*,
                                    const float*, const void*, void*, void*, void*) { LETHE_FAIL("layernorm_backward: not implemented"); }
void CpuBackend::softmax_forward(DType, int64_t, int64_t, const void*, void*, bool) { LETHE_FAIL("softmax_forward: not implemented"); }
void CpuBackend::softmax_backward(DType, int64_t, int64_t, const void*, const void*, void*, bool) { LETHE_FAIL("softmax_backward: not implemented"); }
}  // namespace lethe::kernels
