// CPU optimizer steps (placeholder until implemented).
#include "kernels/cpu/cpu_backend.h"

namespace lethe::kernels {
void CpuBackend::adamw_step(int64_t, float*, const float*, float*, float*, double, double, double,
                            double, double, double, double) { LETHE_FAIL("adamw_step: not implemented"); }
void CpuBackend::sgd_step(int64_t, float*, const float*, float*, double, double, double, double,
                          bool, bool) { LETHE_FAIL("sgd_step: not implemented"); }
}  // namespace lethe::kernels
