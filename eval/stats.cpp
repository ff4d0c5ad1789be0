// KS test, AUC, harmonic mean and Min-K%, restating the algorithms of scipy 1.17
// (stats/_stats_py.py: ks_2samp, _attempt_exact_2kssamp, _compute_prob_outside_square;
// stats/_stats_pythran.py: _compute_outer_prob_inside_method; stats/_ksstats.py: _kolmogn and its
// DMTW / Pomeranz / Pelz-Good helpers; xsf cephes/kolmogorov.h: smirnov), sklearn's roc_auc_score
// and open-unlearning's MinKProbAttack. Where scipy sums with numpy, numpy_sum repeats numpy's
// pairwise order so that the means match to the last bit.
#include "eval/stats.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <numeric>
#include <span>
#include <tuple>
#include <utility>
#include <vector>

#include "engine/error.h"

namespace lethe::eval {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kPi = std::numbers::pi;

double clip01(double p) {
  return std::clamp(p, 0.0, 1.0);
}
double clip01(long double p) {
  return static_cast<double>(std::clamp(p, 0.0L, 1.0L));
}

// numpy's add.reduce on a contiguous float64 vector: eight accumulators over blocks of up to 128
// values, halves (cut at a multiple of 8) above that.
double numpy_sum(std::span<const double> a) {
  const size_t n = a.size();
  if (n < 8) {
    double s = n ? a[0] : 0.0;
    for (size_t i = 1; i < n; ++i) s += a[i];
    return s;
  }
  if (n <= 128) {
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    size_t i = 8;
    for (; i < n - n % 8; i += 8)
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    double s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) s += a[i];
    return s;
  }
  size_t half = n / 2;
  half -= half % 8;
  return numpy_sum(a.first(half)) + numpy_sum(a.subspan(half));
}

// ------------------------------------------------------------------------------------------------
// Exact two-sample distribution (Hodges; Viehmann's recursion for 1 − p)

// Pr(D_{n,n} ≥ h/n): 2 Σ_k (−1)^k binom(2n, n−(k+1)h)/binom(2n, n), each ratio a product of h
// factors, nested Horner-like from the last k so that nothing cancels.
double prob_outside_square(int64_t n, int64_t h) {
  double P = 0.0;
  for (int64_t k = static_cast<int64_t>(std::floor(static_cast<double>(n) / h)); k >= 0; --k) {
    double p1 = 1.0;
    for (int64_t j = 0; j < h; ++j)
      p1 = static_cast<double>(n - k * h - j) * p1 / static_cast<double>(n + k * h + j + 1);
    P = p1 * (1.0 - P);
  }
  return 2 * P;
}

// Pr(D_{m,n} ≥ h/lcm) for m ≠ n: the share of lattice paths (0,0)→(m,n) that leave the band
// |x/m − y/n| < h/lcm, by columns, each column only over the band's window of rows. A holds the
// share of paths to each point that have already left, so no binomial ever overflows.
double prob_outside_band(int64_t m, int64_t n, int64_t g, int64_t h) {
  if (m < n) std::swap(m, n);
  const int64_t mg = m / g, ng = n / g;
  const double dh = static_cast<double>(h), dmg = static_cast<double>(mg);
  int64_t minj = 0;
  int64_t maxj = std::min(static_cast<int64_t>(std::ceil(dh / dmg)), n + 1);
  int64_t curlen = maxj - minj;
  const int64_t len_a = std::min(2 * maxj + 2, n + 1);
  std::vector<double> A(static_cast<size_t>(len_a), 1.0);
  std::fill(A.begin(), A.begin() + maxj, 0.0);
  for (int64_t i = 1; i <= m; ++i) {
    const int64_t lastminj = minj, lastlen = curlen;
    const double ngi = static_cast<double>(ng * i);
    minj =
        std::min(std::max(static_cast<int64_t>(std::floor((ngi - dh) / dmg)) + 1, int64_t{0}), n);
    maxj = std::min(static_cast<int64_t>(std::ceil((ngi + dh) / dmg)), n + 1);
    if (maxj <= minj) return 1.0;
    LETHE_CHECK(maxj - 1 - lastminj < len_a && maxj - minj <= len_a,
                "ks_2samp: exact path window out of range (m=", m, ", n=", n, ", h=", h, ")");
    double val = minj == 0 ? 0.0 : 1.0;
    const double di = static_cast<double>(i);
    for (int64_t jj = 0; jj < maxj - minj; ++jj) {
      const int64_t j = jj + minj;
      val = (A[jj + minj - lastminj] * di + val * static_cast<double>(j)) /
            static_cast<double>(i + j);
      A[jj] = val;
    }
    curlen = maxj - minj;
    if (lastlen > curlen) std::fill(A.begin() + curlen, A.begin() + std::min(lastlen, len_a), 1.0);
  }
  return A[maxj - minj - 1];
}

// ------------------------------------------------------------------------------------------------
// One-sample distributions (scipy's kstwo via _kolmogn, and xsf's smirnov)

constexpr long double kTwo128 = 340282366920938463463374607431768211456.0L;  // 2^128
constexpr double kTwo128d = 340282366920938463463374607431768211456.0;
constexpr double kTwoM128d = 1.0 / kTwo128d;

// log(n!/n^n) by Stirling's series with n·log n taken out.
double log_nfactorial_div_n_pow_n(double n) {
  static constexpr double kStirling[] = {-2.955065359477124183e-2,  6.4102564102564102564e-3,
                                         -1.9175269175269175269e-3, 8.4175084175084175084e-4,
                                         -5.952380952380952381e-4,  7.9365079365079365079e-4,
                                         -2.7777777777777777778e-3, 8.3333333333333333333e-2};
  const double rn = 1.0 / n, u = rn / n;
  double poly = 0.0;
  for (double c : kStirling) poly = poly * u + c;
  return std::log(n) / 2 - n + std::log(2 * kPi) / 2 + rn * poly;
}

// Pr(D_n ≤ d) by the Durbin matrix (Marsaglia, Tsang & Wang): the (k,k) entry of H^n times
// n!/n^n, with d = (k − h)/n; H and the power are rescaled by 2^128 to stay in range.
long double dmtw_cdf(int64_t n, double d) {
  if (d >= 1.0) return 1.0L;
  const double nd = static_cast<double>(n) * d;
  if (nd <= 0.5) return 0.0L;
  const int k = static_cast<int>(std::ceil(nd));
  const double h = k - nd;
  const int m = 2 * k - 1;
  std::vector<double> v(m), w(m);
  double fac = 1.0;
  for (int j = 1; j <= m; ++j) {
    v[j - 1] = 1.0 - std::pow(h, j);
    w[j - 1] = fac;
    fac /= j;
    v[j - 1] *= fac;
  }
  const double tt = std::pow(std::max(2 * h - 1.0, 0.0), m) - 2 * std::pow(h, m);
  v[m - 1] = (1.0 + tt) * fac;

  using Matrix = std::vector<double>;  // m×m row-major
  Matrix H(static_cast<size_t>(m) * m, 0.0);
  for (int i = 1; i < m; ++i)
    for (int r = i - 1; r < m; ++r) H[r * m + i] = w[r - (i - 1)];
  for (int r = 0; r < m; ++r) H[r * m] = v[r];
  for (int c = 0; c < m; ++c) H[(m - 1) * m + c] = v[m - 1 - c];

  auto matmul = [m](const Matrix& a, const Matrix& b) {
    Matrix c(a.size(), 0.0);
    for (int i = 0; i < m; ++i)
      for (int l = 0; l < m; ++l) {
        const double ail = a[i * m + l];
        for (int j = 0; j < m; ++j) c[i * m + j] += ail * b[l * m + j];
      }
    return c;
  };
  Matrix power(H.size(), 0.0);
  for (int i = 0; i < m; ++i) power[i * m + i] = 1.0;
  int64_t expnt = 0, h_expnt = 0;
  for (int64_t nn = n; nn > 0; nn /= 2) {
    if (nn % 2) {
      power = matmul(power, H);
      expnt += h_expnt;
    }
    H = matmul(H, H);
    h_expnt *= 2;
    if (std::abs(H[(k - 1) * m + (k - 1)]) > kTwo128d) {
      for (double& x : H) x /= kTwo128d;
      h_expnt += 128;
    }
  }
  // Multiply by n!/n^n. scipy's value turns long double at its first rescale; so does this one.
  double p = power[(k - 1) * m + (k - 1)];
  long double pl = 0;
  bool extended = false;
  for (int64_t i = 1; i <= n; ++i) {
    if (!extended) {
      p = static_cast<double>(i) * p / static_cast<double>(n);
      if (std::abs(p) < kTwoM128d) {
        pl = static_cast<long double>(p) * kTwo128;
        extended = true;
        expnt -= 128;
      }
    } else {
      pl = static_cast<long double>(i) * pl / static_cast<long double>(n);
      if (std::abs(pl) < 1.0L / kTwo128) {
        pl *= kTwo128;
        expnt -= 128;
      }
    }
  }
  long double result = extended ? pl : static_cast<long double>(p);
  if (expnt != 0) result = std::ldexp(result, static_cast<int>(expnt));
  return std::clamp(result, 0.0L, 1.0L);
}

// Row endpoints of Pomeranz's recursion (scipy's _pomeranz_compute_j1j2).
std::pair<int64_t, int64_t> pomeranz_j1j2(int64_t i, int64_t n, int64_t ll, int ceilf, int roundf) {
  int64_t j1, j2;
  if (i == 0) {
    j1 = -ll - ceilf - 1, j2 = ll + ceilf - 1;
  } else {
    const int64_t half = (i + 1) / 2, odd_i = (i + 1) % 2 == 0;
    if (odd_i) {
      if (half == n + 1)
        j1 = n - ll - ceilf - 1, j2 = n + ll + ceilf - 1;
      else
        j1 = half - 1 - ll - roundf - 1, j2 = half + ll - 1 + ceilf - 1;
    } else {
      j1 = half - 1 - ll - 1, j2 = half + ll + roundf - 1;
    }
  }
  return {std::max(j1 + 2, int64_t{0}), std::min(j2, n)};
}

// Pr(D_n ≤ x) by Pomeranz's recursion: 2n+1 convolutions with (almost) Poisson weights, keeping
// only each row's non-zero window; n! V[n] at the end.
long double pomeranz_cdf(int64_t n, double x) {
  const double dn = static_cast<double>(n);
  const double t = dn * x;
  const int64_t ll = static_cast<int64_t>(std::floor(t));
  const double f = t - static_cast<double>(ll);
  const double g = std::min(f, 1.0 - f);
  const int ceilf = f > 0 ? 1 : 0;
  const int roundf = f > 0.5 ? 1 : 0;
  const int64_t npwrs = 2 * (ll + 1);
  std::vector<double> gpower(npwrs), twogpower(npwrs), onem2gpower(npwrs);
  gpower[0] = twogpower[0] = onem2gpower[0] = 1.0;
  const double g_over_n = g / dn, two_g_over_n = 2 * g / dn,
               one_minus_two_g_over_n = (1 - 2 * g) / dn;
  for (int64_t m = 1; m < npwrs; ++m) {
    gpower[m] = gpower[m - 1] * g_over_n / static_cast<double>(m);
    twogpower[m] = twogpower[m - 1] * two_g_over_n / static_cast<double>(m);
    onem2gpower[m] = onem2gpower[m - 1] * one_minus_two_g_over_n / static_cast<double>(m);
  }
  std::vector<double> V0(npwrs, 0.0), V1(npwrs, 0.0), conv;
  V1[0] = 1.0;
  int64_t V0s = 0, V1s = 0, expnt = 0;
  auto [j1, j2] = pomeranz_j1j2(0, n, ll, ceilf, roundf);
  for (int64_t i = 1; i < 2 * n + 2; ++i) {
    const int64_t k1 = j1;
    std::swap(V0, V1);
    std::swap(V0s, V1s);
    std::fill(V1.begin(), V1.end(), 0.0);
    std::tie(j1, j2) = pomeranz_j1j2(i, n, ll, ceilf, roundf);
    const std::vector<double>& pw =
        (i == 1 || i == 2 * n + 1) ? gpower : (i % 2 ? twogpower : onem2gpower);
    const int64_t ln2 = j2 - k1 + 1;
    if (ln2 <= 0) continue;
    // conv = np.convolve(V0[k1 - V0s : k1 - V0s + ln2], pw[:ln2]), entries j1-k1 .. j2-k1.
    const int64_t off = k1 - V0s;
    const int64_t len_seg = std::max<int64_t>(0, std::min(ln2, npwrs - off));
    const int64_t conv_start = j1 - k1, conv_len = j2 - j1 + 1;
    LETHE_CHECK(off >= 0 && conv_start >= 0 && conv_len <= npwrs,
                "kolmogorov_sf: Pomeranz window out of range (n=", n, ", x=", x, ")");
    for (int64_t c = 0; c < conv_len; ++c) {
      const int64_t tt = conv_start + c;
      double s = 0.0;
      for (int64_t a = std::max<int64_t>(0, tt - (ln2 - 1)); a <= std::min(tt, len_seg - 1); ++a)
        s += V0[off + a] * pw[tt - a];
      V1[c] = s;
    }
    const double vmax = *std::max_element(V1.begin(), V1.end());
    if (vmax > 0 && vmax < kTwoM128d) {
      for (double& v : V1) v *= kTwo128d;
      expnt -= 128;
    }
    V1s = V0s + j1 - k1;
  }
  // Multiply by n!; scipy's value turns long double at its first rescale; so does this one.
  double ans = V1[n - V1s];
  long double ansl = 0;
  bool extended = false;
  for (int64_t m = 1; m <= n; ++m) {
    if (!extended && std::abs(ans) > kTwo128d) {
      ansl = static_cast<long double>(ans) / kTwo128;
      extended = true;
      expnt += 128;
    } else if (extended && std::abs(ansl) > kTwo128) {
      ansl /= kTwo128;
      expnt += 128;
    }
    if (extended)
      ansl *= static_cast<long double>(m);
    else
      ans *= static_cast<double>(m);
  }
  long double result = extended ? ansl : static_cast<long double>(ans);
  if (expnt != 0) result = std::ldexp(result, static_cast<int>(expnt));
  return std::clamp(result, 0.0L, 1.0L);
}

// Pelz & Good's approximation of Pr(D_n ≤ x): K0(z) + K1(z)/√n + K2(z)/n + K3(z)/n^1.5, z = x√n,
// each K in its theta-function form for small z. Not clipped (scipy clips 1 − cdf later).
double pelz_good_cdf(int64_t n, double x) {
  if (x <= 0.0) return 0.0;
  if (x >= 1.0) return 1.0;
  const double pi2 = std::pow(kPi, 2), pi4 = std::pow(kPi, 4), pi6 = std::pow(kPi, 6);
  const double sqrt2pi = std::sqrt(2 * kPi);
  const double dn = static_cast<double>(n);
  const double z = std::sqrt(dn) * x;
  const double z2 = std::pow(z, 2), z3 = std::pow(z, 3), z4 = std::pow(z, 4), z6 = std::pow(z, 6);
  const double qlog = -pi2 / 8 / z2;
  if (qlog < -708) return 0.0;
  double q = std::exp(qlog);

  const double k1a = -z2, k1b = pi2 / 4;
  const double k2a = 6 * z6 + 2 * z4, k2b = (2 * z4 - 5 * z2) * pi2 / 4,
               k2c = pi4 * (1 - 2 * z2) / 16;
  const double k3d = pi6 * (5 - 30 * z2) / 64, k3c = pi4 * (-60 * z2 + 212 * z4) / 16,
               k3b = pi2 * (135 * z4 - 96 * z6) / 4, k3a = -30 * z6 - 90 * std::pow(z, 8);
  double K[4] = {0, 0, 0, 0};
  const int64_t maxk = static_cast<int64_t>(std::ceil(16 * z / kPi));
  for (int64_t k = maxk; k > 0; --k) {
    const double m = static_cast<double>(2 * k - 1);
    const double m2 = m * m, m4 = m2 * m2, m6 = m4 * m2;  // exact: small integers
    const double qpower = std::pow(q, static_cast<double>(8 * k));
    const double coeffs[4] = {1.0, k1a + k1b * m2, k2a + k2b * m2 + k2c * m4,
                              k3a + k3b * m2 + k3c * m4 + k3d * m6};
    for (int i = 0; i < 4; ++i) K[i] = K[i] * qpower + coeffs[i];
  }
  const double div[4] = {z, 6 * z4, 72 * std::pow(z, 7), 6480 * std::pow(z, 10)};
  for (int i = 0; i < 4; ++i) K[i] = K[i] * q * sqrt2pi / div[i];

  // The sums over all integers k for K2 and K3.
  q = std::exp(-pi2 / 2 / z2);
  const double sqrt3z = std::sqrt(3.0) * z;
  std::vector<double> t2, t3;
  for (int64_t k = maxk; k > 0; --k) {
    const double k2 = static_cast<double>(k * k);
    const double kpi = kPi * static_cast<double>(k);
    const double qk = std::pow(q, k2);
    t2.push_back(k2 * qk);
    t3.push_back((sqrt3z + kpi) * (sqrt3z - kpi) * k2 * qk);
  }
  K[2] += numpy_sum(t2) * (pi2 * sqrt2pi / (-36 * z3));
  K[3] += numpy_sum(t3) * (pi2 * sqrt2pi / (216 * z6));
  for (int i = 1; i < 4; ++i) K[i] /= std::pow(dn, i / 2.0);
  return ((K[0] + K[1]) + K[2]) + K[3];
}

// floor(n·x) and the remainder, from the exact product n·x = p + e.
void mod_nx(int64_t n, double x, int64_t& nx_floor, double& alpha, double& p, double& e) {
  const double dn = static_cast<double>(n);
  p = dn * x;
  e = std::fma(dn, x, -p);
  double fl = std::floor(p);
  if (p == fl && e < 0) fl -= 1;
  alpha = (p - fl) + e;
  nx_floor = static_cast<int64_t>(fl);
  if (alpha >= 1.0) nx_floor += 1, alpha = 0.0;
}

// Pr(D+_n ≥ x), the one-sided statistic (Smirnov; Birnbaum & Tingey's sum), with xsf's special
// cases. The sum x Σ_{v < n(1−x)} C(n,v) (x+v/n)^(v−1) (1−x−v/n)^(n−v) has positive terms; they
// are summed from their logarithms in long double (xsf uses double-double), stopping where xsf
// does.
double smirnov_sf(int64_t n, double x) {
  if (!(n > 0 && x >= 0.0 && x <= 1.0)) return kNaN;
  if (n == 1) return 1 - x;
  if (x == 0.0) return 1.0;
  if (x == 1.0) return 0.0;
  int64_t nxfl;
  double alpha, nx_hi, nx_lo;
  mod_nx(n, x, nxfl, alpha, nx_hi, nx_lo);
  const long double xl = x, nl = static_cast<long double>(n);
  if (nxfl == 0 || (nxfl == 1 && alpha == 0)) {  // x ≤ 1/n
    const long double cdf = xl * std::pow(1.0L + xl, static_cast<long double>(n - 1));
    return clip01(1.0L - cdf);
  }
  constexpr double kMinLog = -7.451332191019412076235245305675398106812E2;  // log 2^-1075
  if (-2 * static_cast<double>(n) * x * x < kMinLog) return 0.0;
  if (nxfl >= n - 1) return clip01(std::pow(1.0L - xl, nl));
  if (n > 1000000) {  // xsf's approximation for very large n
    const double dn = static_cast<double>(n);
    const double logp = -std::pow(6.0 * dn * x + 1, 2) / 18.0 / dn;
    return clip01(logp < -std::numbers::ln2 ? std::exp(logp) : 1 - (-std::expm1(logp)));
  }
  const int64_t n_terms = n - nxfl;  // v = 0 .. n - floor(n x) - 1, i.e. v < n(1 - x)
  const long double nx = static_cast<long double>(nx_hi) + nx_lo;
  long double log_c = 0;  // log C(n, v)
  long double log_max = 0, scaled_sum = 0;
  const long double log_eps =
      std::log(static_cast<long double>(std::numeric_limits<double>::epsilon()));
  for (int64_t v = 0; v < n_terms; ++v) {
    const long double vl = static_cast<long double>(v);
    const long double up = (nx + vl) / nl;                      // x + v/n
    const long double down = ((nl - vl) - nx_hi - nx_lo) / nl;  // 1 - x - v/n
    const long double log_a = log_c + (vl - 1) * std::log(up) + (nl - vl) * std::log(down);
    if (v == 0) {
      log_max = log_a, scaled_sum = 1;
    } else if (log_a > log_max) {
      scaled_sum = scaled_sum * std::exp(log_max - log_a) + 1, log_max = log_a;
    } else {
      scaled_sum += std::exp(log_a - log_max);
    }
    // xsf: stop once 4·(terms left)·A_v < eps·Σ (and this is not the last term anyway).
    if (v > 0 && v != n_terms - 1 &&
        std::log(4.0L * static_cast<long double>(n_terms - v)) + log_a <
            log_eps + log_max + std::log(scaled_sum))
      break;
    log_c += std::log((nl - vl) / (vl + 1));
  }
  return clip01(std::exp(std::log(xl) + log_max + std::log(scaled_sum)));
}

}  // namespace

double kolmogorov_sf(int64_t n, double x) {
  if (n <= 0 || std::isnan(x)) return kNaN;
  if (x >= 1.0) return 0.0;
  if (x <= 0.0) return 1.0;
  const double dn = static_cast<double>(n);
  const double t = dn * x;
  if (t <= 1.0) {  // Ruben & Gambino: 1/2n < x ≤ 1/n
    if (t <= 0.5) return 1.0;
    double prob;
    if (n <= 140) {
      prob = 1.0;
      for (int64_t i = 1; i <= n; ++i) prob *= static_cast<double>(i) * (1.0 / dn) * (2 * t - 1);
    } else {
      prob = std::exp(log_nfactorial_div_n_pow_n(dn) + dn * std::log(2 * t - 1));
    }
    return clip01(1.0 - prob);
  }
  if (t >= dn - 1) return clip01(2 * std::pow(1.0 - x, dn));  // Ruben & Gambino
  if (x >= 0.5) return clip01(2 * smirnov_sf(n, x));
  const double nx2 = t * x;
  if (n <= 140) {
    if (nx2 <= 0.754693) return clip01(1.0L - dmtw_cdf(n, x));
    if (nx2 <= 4) return clip01(1.0L - pomeranz_cdf(n, x));
    return clip01(2 * smirnov_sf(n, x));  // Miller's approximation
  }
  if (nx2 >= 370.0) return 0.0;
  if (nx2 >= 2.2) return clip01(2 * smirnov_sf(n, x));
  if (n <= 100000 && dn * std::pow(x, 1.5) <= 1.4) return clip01(1.0L - dmtw_cdf(n, x));
  return clip01(1.0 - pelz_good_cdf(n, x));
}

KsResult ks_2samp(const std::vector<double>& a_in, const std::vector<double>& b_in) {
  const auto has_nan = [](const std::vector<double>& v) {
    return std::any_of(v.begin(), v.end(), [](double x) { return std::isnan(x); });
  };
  if (a_in.empty() || b_in.empty() || has_nan(a_in) || has_nan(b_in)) return {kNaN, kNaN};
  std::vector<double> a = a_in, b = b_in;
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  const int64_t n1 = static_cast<int64_t>(a.size()), n2 = static_cast<int64_t>(b.size());
  const double d1 = static_cast<double>(n1), d2 = static_cast<double>(n2);

  // F_a − F_b at every distinct value (right-continuous ECDFs, so ties move both at once).
  double max_diff = -std::numeric_limits<double>::infinity();
  double min_diff = std::numeric_limits<double>::infinity();
  size_t i = 0, j = 0;
  while (i < a.size() || j < b.size()) {
    const double v = j == b.size() || (i < a.size() && a[i] <= b[j]) ? a[i] : b[j];
    while (i < a.size() && a[i] <= v) ++i;
    while (j < b.size() && b[j] <= v) ++j;
    const double diff = static_cast<double>(i) / d1 - static_cast<double>(j) / d2;
    max_diff = std::max(max_diff, diff);
    min_diff = std::min(min_diff, diff);
  }
  const double min_s = std::clamp(-min_diff, 0.0, 1.0);
  double d = min_s > max_diff ? min_s : max_diff;

  const int64_t g = std::gcd(n1, n2);
  bool exact = std::max(n1, n2) <= 10000;
  double p = kNaN;
  if (exact) {
    const int64_t lcm = (n1 / g) * n2;
    const int64_t h = static_cast<int64_t>(std::nearbyint(d * static_cast<double>(lcm)));
    d = static_cast<double>(h) / static_cast<double>(lcm);
    if (h == 0) {
      p = 1.0;
    } else {
      p = n1 == n2 ? prob_outside_square(n1, h) : prob_outside_band(n1, n2, g, h);
      // scipy rejects a value outside [0, 1] (the series can round to 1 + ulp) and falls back.
      exact = p >= 0.0 && p <= 1.0;
    }
  }
  if (!exact) {
    const double m = std::max(d1, d2), n = std::min(d1, d2);
    const double en = m * n / (m + n);
    p = kolmogorov_sf(static_cast<int64_t>(std::nearbyint(en)), d);
  }
  return {d, clip01(p)};
}

double roc_auc(const std::vector<double>& label0, const std::vector<double>& label1) {
  LETHE_CHECK(!label0.empty() && !label1.empty(), "roc_auc: ", label0.size(), " label-0 and ",
              label1.size(), " label-1 scores; both classes are needed");
  const auto nan = [](double x) { return std::isnan(x); };
  LETHE_CHECK(std::none_of(label0.begin(), label0.end(), nan) &&
                  std::none_of(label1.begin(), label1.end(), nan),
              "roc_auc: a score is NaN");
  std::vector<double> s0 = label0;
  std::sort(s0.begin(), s0.end());
  // Twice the Mann-Whitney U: 2 per label-0 score strictly below, 1 per tie.
  uint64_t u2 = 0;
  for (double s : label1) {
    const auto lo = std::lower_bound(s0.begin(), s0.end(), s);
    const auto hi = std::upper_bound(lo, s0.end(), s);
    u2 += 2 * static_cast<uint64_t>(lo - s0.begin()) + static_cast<uint64_t>(hi - lo);
  }
  // Both integers are exact in a double (≤ 2^53), so the quotient is rounded once.
  return static_cast<double>(u2) /
         (2.0 * static_cast<double>(s0.size()) * static_cast<double>(label1.size()));
}

double harmonic_mean(const std::vector<double>& values) {
  if (values.empty()) return kNaN;
  std::vector<double> inv(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    if (std::isnan(values[i]) || values[i] < 0) return kNaN;
    inv[i] = 1.0 / values[i];  // +inf for 0, so the mean is 0
  }
  return 1.0 / (numpy_sum(inv) / static_cast<double>(values.size()));
}

double min_k_percent(const std::vector<double>& token_logprobs, double k) {
  LETHE_CHECK(k > 0 && k <= 1, "min_k_percent: k = ", k, " is not in (0, 1]");
  if (token_logprobs.empty()) return 0.0;
  if (std::any_of(token_logprobs.begin(), token_logprobs.end(),
                  [](double x) { return std::isnan(x); }))
    return kNaN;
  const size_t n = token_logprobs.size();
  // Python's int(len · k): the product in double, truncated.
  const size_t count = std::max<size_t>(1, static_cast<size_t>(static_cast<double>(n) * k));
  std::vector<double> v = token_logprobs;
  std::partial_sort(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(count), v.end());
  return numpy_sum(std::span<const double>(v).first(count)) / static_cast<double>(count);
}

}  // namespace lethe::eval
