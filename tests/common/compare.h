// Comparison helpers that fail on NaN. A check written `if (err > tol) fail` passes when err is
// NaN, and a running `std::max(worst, err)` silently drops a NaN err; these do neither.
#pragma once

#include <cmath>
#include <limits>

namespace lethe::testing {

// max(a, b), but NaN as soon as either is NaN.
inline double nan_max(double a, double b) {
  if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<double>::quiet_NaN();
  return a < b ? b : a;
}

// |got - want| <= atol + rtol·|want|; false when either value (or the difference) is NaN or Inf.
inline bool within(double got, double want, double atol, double rtol) {
  const double diff = std::abs(got - want);
  return std::isfinite(diff) && diff <= atol + rtol * std::abs(want);
}

}  // namespace lethe::testing
