// CPU attention (placeholder until implemented).
#include "kernels/cpu/cpu_backend.h"

namespace lethe::kernels {
void CpuBackend::attention_forward(const AttentionArgs&) { LETHE_FAIL("attention_forward: not implemented"); }
void CpuBackend::attention_backward(const AttentionBackwardArgs&) { LETHE_FAIL("attention_backward: not implemented"); }
}  // namespace lethe::kernels
