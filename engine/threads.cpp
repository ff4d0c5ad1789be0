// See threads.h.
#include "engine/threads.h"

#include <omp.h>

#include <algorithm>
#include <thread>

#include "engine/error.h"

namespace lethe {

int max_cpu_threads() {
  const unsigned hw = std::thread::hardware_concurrency();
  return std::max(4, 4 * static_cast<int>(hw));
}

void set_cpu_threads(int64_t n, const std::string& what) {
  const int most = max_cpu_threads();
  LETHE_USAGE_CHECK(n >= 0 && n <= most, what, " = ", n, " is outside [0, ", most,
                    "] (0 = all cores; at most 4 threads per hardware thread of this machine)");
  if (n > 0) omp_set_num_threads(static_cast<int>(n));
}

}  // namespace lethe
