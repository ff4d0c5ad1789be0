// CPU thread counts: the most lethe accepts, and the one place that sets OpenMP's count, so a
// request the machine cannot honour is a clear error instead of libgomp aborting the process.
#pragma once

#include <cstdint>
#include <string>

namespace lethe {

// The most CPU threads a run may ask for: 4 per hardware thread of this machine (at least 4).
// More only oversubscribes the cores, and thousands end in libgomp's "Thread creation failed".
int max_cpu_threads();

// Sets OpenMP's thread count to `n` (0 = leave OpenMP's default). n outside [0, max_cpu_threads()]
// is a lethe::UsageError naming `what` (a flag or recipe key).
void set_cpu_threads(int64_t n, const std::string& what);

}  // namespace lethe
