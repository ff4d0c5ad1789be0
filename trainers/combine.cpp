// Combination rules on the Gram matrix of the objectives' gradients.
#include "trainers/combine.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/error.h"

namespace lethe::trainers {

namespace {

int dim_of(const std::vector<double>& gram) {
  const int k = static_cast<int>(std::lround(std::sqrt(static_cast<double>(gram.size()))));
  LETHE_CHECK(k >= 1 && static_cast<size_t>(k * k) == gram.size(),
              "combination rule: ", gram.size(), " Gram entries is not a square matrix");
  return k;
}

double quad(const std::vector<double>& g, int k, const std::vector<double>& c) {
  double s = 0;
  for (int i = 0; i < k; ++i)
    for (int j = 0; j < k; ++j) s += c[i] * g[i * k + j] * c[j];
  return s;
}

// Solves A x = b (n ≤ 16) by Gaussian elimination with partial pivoting; false if singular.
bool solve(std::vector<double> a, std::vector<double> b, int n, std::vector<double>& x) {
  double scale = 0;
  for (double v : a) scale = std::max(scale, std::fabs(v));
  if (scale == 0) return false;
  for (int col = 0; col < n; ++col) {
    int piv = col;
    for (int r = col + 1; r < n; ++r)
      if (std::fabs(a[r * n + col]) > std::fabs(a[piv * n + col])) piv = r;
    if (std::fabs(a[piv * n + col]) <= 1e-12 * scale) return false;
    if (piv != col) {
      for (int j = 0; j < n; ++j) std::swap(a[col * n + j], a[piv * n + j]);
      std::swap(b[col], b[piv]);
    }
    for (int r = col + 1; r < n; ++r) {
      const double f = a[r * n + col] / a[col * n + col];
      for (int j = col; j < n; ++j) a[r * n + j] -= f * a[col * n + j];
      b[r] -= f * b[col];
    }
  }
  x.assign(static_cast<size_t>(n), 0.0);
  for (int r = n - 1; r >= 0; --r) {
    double s = b[r];
    for (int j = r + 1; j < n; ++j) s -= a[r * n + j] * x[j];
    x[r] = s / a[r * n + r];
  }
  return true;
}

}  // namespace

std::vector<double> min_norm_simplex(const std::vector<double>& g, int k, std::string* solution,
                                     const std::vector<int>* labels) {
  std::vector<double> lam(static_cast<size_t>(k), 0.0);
  if (k == 1) {
    lam[0] = 1.0;
    if (solution) *solution = "single";
    return lam;
  }
  // Interior: λ ∝ G⁻¹1, accepted when every component is positive.
  std::vector<double> x;
  if (solve(g, std::vector<double>(static_cast<size_t>(k), 1.0), k, x)) {
    double s = 0;
    for (double v : x) s += v;
    bool positive = s != 0 && std::isfinite(s);
    for (double v : x) positive = positive && v / s > 0;
    if (positive) {
      for (int i = 0; i < k; ++i) lam[i] = x[i] / s;
      if (solution) *solution = "interior";
      return lam;
    }
  }
  // Edges: the min-norm point of each segment [gᵢ, gⱼ]; the least λᵀGλ wins.
  double best = std::numeric_limits<double>::infinity();
  for (int i = 0; i < k; ++i)
    for (int j = i + 1; j < k; ++j) {
      const double gii = g[i * k + i], gjj = g[j * k + j], gij = g[i * k + j];
      const double denom = gii + gjj - 2 * gij;          // ‖gᵢ − gⱼ‖²
      double a = denom > 0 ? (gjj - gij) / denom : 0.5;  // (gⱼ − gᵢ)·gⱼ / ‖gᵢ − gⱼ‖²
      a = std::clamp(a, 0.0, 1.0);
      std::vector<double> c(static_cast<size_t>(k), 0.0);
      c[i] = a;
      c[j] = 1 - a;
      const double v = quad(g, k, c);
      if (v < best) {
        best = v;
        lam = c;
        if (solution)
          *solution = "edge:" + std::to_string(labels ? (*labels)[i] : i) + "," +
                      std::to_string(labels ? (*labels)[j] : j);
      }
    }
  return lam;
}

Combination combine_weighted(const std::vector<double>& gram, const std::vector<double>& weights) {
  const int k = dim_of(gram);
  LETHE_CHECK(static_cast<int>(weights.size()) == k, "weighted rule: ", weights.size(),
              " weights for ", k, " objectives");
  Combination c;
  c.coeffs = weights;
  c.weights = weights;
  c.excluded.assign(static_cast<size_t>(k), false);
  c.direction_norm = std::sqrt(std::max(0.0, quad(gram, k, c.coeffs)));
  return c;
}

Combination combine_ngdiff(const std::vector<double>& gram, double eps) {
  LETHE_CHECK(dim_of(gram) == 2, "ngdiff rule: needs the [forget, retain] gradients");
  const double nf = std::sqrt(std::max(0.0, gram[0])), nr = std::sqrt(std::max(0.0, gram[3]));
  Combination c;
  c.coeffs = {-1.0 / (nf + eps), 1.0 / (nr + eps)};
  c.weights = c.coeffs;
  c.excluded = {false, false};
  c.direction_norm = std::sqrt(std::max(0.0, quad(gram, 2, c.coeffs)));
  return c;
}

Combination combine_mgda(const std::vector<double>& gram, const MgdaOptions& o) {
  const int k = dim_of(gram);
  std::vector<double> norm(static_cast<size_t>(k));
  double largest = 0;
  for (int i = 0; i < k; ++i) {
    norm[i] = std::sqrt(std::max(0.0, gram[i * k + i]));
    largest = std::max(largest, norm[i]);
  }
  Combination c;
  c.excluded.assign(static_cast<size_t>(k), false);
  std::vector<int> active;
  for (int i = 0; i < k; ++i) {
    c.excluded[i] = !(norm[i] >= o.exclude_below * largest) || largest == 0;
    if (!c.excluded[i]) active.push_back(i);
  }
  c.coeffs.assign(static_cast<size_t>(k), 0.0);
  c.weights.assign(static_cast<size_t>(k), 0.0);
  if (active.empty()) {  // every gradient is zero: d = 0
    c.solution = "zero";
    return c;
  }
  const int a = static_cast<int>(active.size());
  // Optional equalisation: g'ᵢ = sᵢ gᵢ with sᵢ = mean norm / ‖gᵢ‖.
  std::vector<double> s(static_cast<size_t>(a), 1.0);
  if (o.normalize_grads) {
    double mean = 0;
    for (int i : active) mean += norm[i];
    mean /= a;
    for (int i = 0; i < a; ++i) s[i] = mean / norm[active[i]];
  }
  std::vector<double> ga(static_cast<size_t>(a * a));
  for (int i = 0; i < a; ++i)
    for (int j = 0; j < a; ++j) ga[i * a + j] = s[i] * s[j] * gram[active[i] * k + active[j]];
  std::vector<double> lam = min_norm_simplex(ga, a, &c.solution, &active);
  for (int i = 0; i < a; ++i) {
    c.weights[active[i]] = lam[i];
    c.coeffs[active[i]] = lam[i] * s[i];
  }
  if (o.rescale_direction) {
    // ‖mean of the active gradients‖ = sqrt(1ᵀG_A1)/|A|
    double mean_sq = 0;
    for (int i : active)
      for (int j : active) mean_sq += gram[i * k + j];
    const double target = std::sqrt(std::max(0.0, mean_sq)) / a;
    const double dn = std::sqrt(std::max(0.0, quad(gram, k, c.coeffs)));
    if (dn > 0)
      for (double& v : c.coeffs) v *= target / dn;
  }
  c.direction_norm = std::sqrt(std::max(0.0, quad(gram, k, c.coeffs)));
  return c;
}

}  // namespace lethe::trainers
