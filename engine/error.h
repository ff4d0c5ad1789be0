// lethe::Error and LETHE_CHECK for engine users; defined at the lowest layer (kernels/error.h)
// so every folder can throw it without depending upwards.
#pragma once

#include "kernels/error.h"
