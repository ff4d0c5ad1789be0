// Linked instead of the CUDA backend when lethe is built without CUDA: reports why, never crashes.
#include "kernels/backend.h"

namespace lethe::kernels {

Backend* cuda_backend(int) {
  return nullptr;
}

std::string cuda_unavailable_reason(int) {
  return "lethe was built without CUDA (nvcc was not found at configure time; "
         "reconfigure with -DLETHE_CUDA=ON on a machine with the CUDA toolkit)";
}

}  // namespace lethe::kernels
