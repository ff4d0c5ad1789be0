// The kernels behind a Device, for the engine's own .cpp files only: models, trainers and tools
// never include this header (they reach devices through Tensor and the ops), so no kernels::
// name is visible above engine/.
#pragma once

#include "engine/tensor.h"
#include "kernels/backend.h"

namespace lethe {

// The backend that runs kernels for a device; throws lethe::Error when it is unavailable.
kernels::Backend& backend(Device d);

// t's shape and strides as a kernels::Layout, for kernels that take strided input.
kernels::Layout layout_of(const Tensor& t);

}  // namespace lethe
