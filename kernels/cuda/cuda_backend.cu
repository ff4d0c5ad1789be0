// CUDA backend entry points (placeholder: reports that no kernels exist yet).
#include <cuda_runtime.h>

#include "kernels/backend.h"

namespace lethe::kernels {

Backend* cuda_backend() { return nullptr; }

std::string cuda_unavailable_reason() { return "the CUDA backend has no kernels yet"; }

}  // namespace lethe::kernels
