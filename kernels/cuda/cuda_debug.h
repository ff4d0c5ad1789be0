// Test hooks of the CUDA backend (exists only when lethe is built with CUDA: LETHE_WITH_CUDA).
// Plain C++: no CUDA types here; not part of the kernel interface (kernels/backend.h).
#pragma once

#include <cstddef>

namespace lethe::kernels {

// When on, every block handed out by the CUDA allocator is first filled with 0xFF bytes (NaN
// for every float dtype), so a kernel that leaves part of its output unwritten shows up as NaNs.
// No-op when no GPU is visible.
void cuda_set_poison_allocations(bool on);

// When on, attention runs the simple per-row kernels instead of the tiled flash kernels (the
// unfused reference the flash kernels are tested against).
void cuda_set_simple_attention(bool on);

// The allocator's high-water mark of live bytes (handed out, not yet freed) since the last
// reset; the reset returns the live bytes it starts from. 0 when no GPU is visible.
size_t cuda_reset_peak_bytes();
size_t cuda_peak_bytes();

// Bytes currently cached (free, not returned to the driver) by the CUDA allocator.
size_t cuda_cached_bytes();

}  // namespace lethe::kernels
