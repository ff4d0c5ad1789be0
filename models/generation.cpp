// Generation shared by the model families: HF-compatible greedy decoding and seeded sampling
// around a family's cached forward step.
#include "models/generation.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/random.h"

namespace lethe::models {

namespace {

// A uniform draw in [0, 1) that depends only on (seed, row, step).
double uniform(uint64_t seed, int64_t row, int64_t step) {
  uint64_t x = splitmix64(seed);
  x = splitmix64(x ^ static_cast<uint64_t>(row));
  x = splitmix64(x ^ (static_cast<uint64_t>(step) << 32));
  return static_cast<double>(x >> 11) * (1.0 / 9007199254740992.0);
}

}  // namespace

std::vector<double> sampling_distribution(const std::vector<float>& logits,
                                          const GenerateOptions& o) {
  const int64_t V = static_cast<int64_t>(logits.size());
  LETHE_CHECK(V > 0, "generate: empty logits row");
  LETHE_CHECK(std::isfinite(o.temperature) && o.temperature > 0,
              "generate: temperature must be > 0, got ", o.temperature);
  const double ninf = -std::numeric_limits<double>::infinity();
  std::vector<double> x(logits.begin(), logits.end());
  for (double& v : x) v /= o.temperature;
  if (o.top_k > 0 && o.top_k < V) {  // keep values >= the k-th largest (ties kept, as HF)
    std::vector<double> sorted = x;
    std::nth_element(sorted.begin(), sorted.begin() + (o.top_k - 1), sorted.end(),
                     std::greater<double>());
    const double thr = sorted[static_cast<size_t>(o.top_k - 1)];
    for (double& v : x)
      if (v < thr) v = ninf;
  }
  if (o.top_p < 1.0) {  // HF: ascending sort, drop the prefix whose mass is <= 1 - top_p
    std::vector<int64_t> order(static_cast<size_t>(V));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return x[a] < x[b]; });
    const double mx = x[order.back()];
    double z = 0;
    for (double v : x) z += std::exp(v - mx);
    double cum = 0;
    for (int64_t i = 0; i + 1 < V; ++i) {  // the most likely token is always kept
      cum += std::exp(x[order[i]] - mx) / z;
      if (cum <= 1.0 - o.top_p) x[order[i]] = ninf;
    }
  }
  const double mx = *std::max_element(x.begin(), x.end());
  std::vector<double> p(x.size());
  double z = 0;
  for (size_t i = 0; i < x.size(); ++i) z += p[i] = x[i] == ninf ? 0.0 : std::exp(x[i] - mx);
  for (double& v : p) v /= z;
  return p;
}

int64_t pick_next_token(const std::vector<float>& logits, const GenerateOptions& o, double u) {
  LETHE_CHECK(!logits.empty(), "generate: empty logits row");
  if (!o.do_sample) return std::max_element(logits.begin(), logits.end()) - logits.begin();
  const std::vector<double> p = sampling_distribution(logits, o);
  double cum = 0;
  int64_t last = 0;
  for (size_t i = 0; i < p.size(); ++i) {  // inverse CDF in id order
    if (p[i] == 0) continue;
    cum += p[i];
    last = static_cast<int64_t>(i);
    if (cum > u) return last;
  }
  return last;
}

GenerateResult generate_with(const Tensor& prompt_ids, const Tensor& prompt_mask,
                             const GenerateOptions& o, const std::vector<int64_t>& model_eos,
                             int64_t model_pad, const DecodeStep& step_fn) {
  LETHE_CHECK(prompt_ids.defined() && prompt_ids.dtype() == DType::i64 && prompt_ids.dim() == 2,
              "generate: prompt ids must be i64 [batch, seq], got ",
              prompt_ids.defined() ? prompt_ids.str() : "undefined");
  LETHE_CHECK(prompt_mask.defined() && prompt_mask.shape() == prompt_ids.shape(),
              "generate: prompt mask must have the shape of the ids ", prompt_ids.str());
  LETHE_CHECK(o.max_new_tokens >= 0, "generate: max_new_tokens must be >= 0, got ",
              o.max_new_tokens);
  LETHE_CHECK(!o.do_sample || (std::isfinite(o.temperature) && o.temperature > 0),
              "generate: temperature must be > 0, got ", o.temperature);
  LETHE_CHECK(o.top_p > 0 && o.top_p <= 1.0, "generate: top_p must be in (0, 1], got ", o.top_p);
  LETHE_CHECK(o.top_k >= 0, "generate: top_k must be >= 0, got ", o.top_k);
  const int64_t B = prompt_ids.size(0), T = prompt_ids.size(1);
  LETHE_CHECK(T > 0, "generate: empty prompts ", prompt_ids.str());
  std::vector<int64_t> seq = prompt_ids.to_int_vector();
  std::vector<int64_t> mask = prompt_mask.to_int_vector();
  for (int64_t b = 0; b < B; ++b)
    LETHE_CHECK(mask[b * T + T - 1] == 1, "generate: prompt row ", b,
                " ends with padding; prompts must be left-padded");
  const std::vector<int64_t> eos =
      o.eos_token_id ? std::vector<int64_t>{*o.eos_token_id} : model_eos;
  const int64_t pad = o.pad_token_id ? *o.pad_token_id : model_pad;

  NoGradGuard no_grad;
  GenerateResult res;
  res.tokens.assign(static_cast<size_t>(B), {});
  std::vector<bool> done(static_cast<size_t>(B), false);
  int64_t len = T;
  Tensor logits = step_fn(prompt_ids, prompt_mask);
  std::vector<std::vector<int64_t>> rows(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) rows[b].assign(seq.begin() + b * T, seq.begin() + (b + 1) * T);
  std::vector<int64_t> masks(mask);
  for (int64_t step = 0; step < o.max_new_tokens; ++step) {
    const int64_t V = logits.size(2);
    const std::vector<float> last = logits.select(1, logits.size(1) - 1).to_float_vector();
    std::vector<int64_t> next(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b) {
      if (done[b]) {
        next[b] = pad;
        continue;
      }
      std::vector<float> row(last.begin() + b * V, last.begin() + (b + 1) * V);
      next[b] = pick_next_token(row, o, o.do_sample ? uniform(o.seed, b, step) : 0.0);
      res.tokens[b].push_back(next[b]);
      if (std::find(eos.begin(), eos.end(), next[b]) != eos.end()) done[b] = true;
    }
    ++len;
    std::vector<int64_t> full_mask;
    full_mask.reserve(static_cast<size_t>(B * len));
    for (int64_t b = 0; b < B; ++b) {
      rows[b].push_back(next[b]);
      for (int64_t t = 0; t < len - 1; ++t) full_mask.push_back(masks[b * (len - 1) + t]);
      full_mask.push_back(1);
    }
    masks = full_mask;
    if (std::all_of(done.begin(), done.end(), [](bool d) { return d; })) break;
    if (step + 1 == o.max_new_tokens) break;
    logits = step_fn(Tensor::from_vector(next, {B, 1}, DType::i64),
                     Tensor::from_vector(masks, {B, len}, DType::i64));
  }
  std::vector<int64_t> flat;
  flat.reserve(static_cast<size_t>(B * len));
  for (auto& r : rows) flat.insert(flat.end(), r.begin(), r.end());
  res.sequences = Tensor::from_vector(flat, {B, len}, DType::i64);
  return res;
}

}  // namespace lethe::models
