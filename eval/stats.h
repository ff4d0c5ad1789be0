// The statistics behind TOFU's forget quality and model utility and MUSE's PrivLeak: the
// two-sample Kolmogorov-Smirnov test as scipy.stats.ks_2samp, ROC AUC as sklearn, the harmonic
// mean as scipy.stats.hmean, open-unlearning's Min-K%. Numbers in, numbers out: no model, no I/O.
// docs/metrics.md gives each function's reference and the tolerances the fixtures hold it to.
#pragma once

#include <cstdint>
#include <vector>

namespace lethe::eval {

struct KsResult {
  double statistic = 0;  // D = sup |F_a − F_b|
  double pvalue = 1;
};

// scipy.stats.ks_2samp(a, b) with its defaults (two-sided, method 'auto'): the exact p-value when
// both samples have at most 10000 values, else (or when scipy's exact series is rejected) the
// asymptotic one, kstwo.sf(D, round(n·m/(n+m))). Ties are allowed. NaN in either sample, or an
// empty sample, gives NaN for both numbers, as scipy does.
KsResult ks_2samp(const std::vector<double>& a, const std::vector<double>& b);

// scipy.stats.kstwo.sf(d, n): the survival function of the one-sample two-sided KS statistic D_n
// (Simard & L'Ecuyer's choice of algorithm by n and n·d², as scipy's _kolmogn). ks_2samp's
// asymptotic path; exposed for its tests.
double kolmogorov_sf(int64_t n, double d);

// sklearn.metrics.roc_auc_score(labels, scores) with label 0 for `label0` and 1 for `label1`: the
// probability that a label-1 score exceeds a label-0 one, ties counting half, computed exactly
// (twice the Mann-Whitney U in integers) and rounded once. Throws if either side is empty or a
// score is NaN (sklearn raises too).
double roc_auc(const std::vector<double>& label0, const std::vector<double>& label1);

// scipy.stats.hmean(values): 1 / mean(1/v). 0 when some value is 0 (TOFU's model utility); NaN for
// an empty list, a NaN or a negative value (scipy warns and returns NaN).
double harmonic_mean(const std::vector<double>& values);

// Min-K% of a text's token log-probabilities as open-unlearning's MinKProbAttack: the mean of the
// lowest max(1, int(k·n)) values (open-unlearning reports its negation as the score). 0 for an
// empty list, as there. k in (0, 1].
double min_k_percent(const std::vector<double>& token_logprobs, double k);

}  // namespace lethe::eval
