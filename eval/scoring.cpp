// Token statistics on a CausalLM and the per-text scores of the MIA suite, memorisation and
// perplexity. The per-position math runs in double on the host over the labelled span only.
#include "eval/scoring.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include "engine/autograd.h"
#include "engine/error.h"
#include "eval/parallel.h"
#include "trainers/batch.h"

namespace lethe::eval {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// −mean of the lowest max(1, ⌊k·n⌋) values (open-unlearning's Min-K % family); 0 when empty.
double neg_mean_lowest(std::vector<double> v, double k) {
  if (v.empty()) return 0.0;
  const size_t m = std::max<size_t>(1, static_cast<size_t>(k * static_cast<double>(v.size())));
  std::partial_sort(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(m), v.end());
  double s = 0;
  for (size_t i = 0; i < m; ++i) s += v[i];
  return -s / static_cast<double>(m);
}

}  // namespace

namespace {

std::vector<TokenStats> token_stats_local(const models::CausalLM& model,
                                          const std::vector<trainers::data::Sample>& samples,
                                          int64_t batch_size, bool vocab_stats) {
  LETHE_CHECK(batch_size >= 1, "token statistics: batch size ", batch_size);
  NoGradGuard ng;
  std::vector<TokenStats> out;
  out.reserve(samples.size());
  const int64_t V = model.vocab_size();
  trainers::for_each_batch(
      samples, batch_size, model.batch_pad_id(), [&](const trainers::MicroBatch& mb, size_t i) {
        const Tensor logits = model.logits(mb.ids, mb.mask);
        const std::vector<int64_t> targets = mb.targets.to_int_vector();
        const int64_t T = mb.length();
        for (size_t r = 0; r < static_cast<size_t>(mb.rows()); ++r) {
          TokenStats st;
          int64_t first = -1, last = -1;
          for (int64_t t = 0; t < T; ++t)
            if (targets[r * T + t] != -100) {
              if (first < 0) first = t;
              last = t;
            }
          LETHE_CHECK(first >= 0, "token statistics: sample ", i + r, " has no labelled token");
          const std::vector<float> rows =
              logits.select(0, static_cast<int64_t>(r)).slice(0, first, last + 1).to_float_vector();
          for (int64_t t = first; t <= last; ++t) {
            const int64_t y = targets[r * T + t];
            if (y == -100) continue;
            LETHE_CHECK(y >= 0 && y < V, "token statistics: label ", y, " outside the vocabulary (",
                        V, ")");
            const float* row = rows.data() + (t - first) * V;
            int64_t arg = 0;
            for (int64_t v = 1; v < V; ++v)
              if (row[v] > row[arg]) arg = v;
            const double mx = row[arg];
            double z = 0;
            for (int64_t v = 0; v < V; ++v) z += std::exp(static_cast<double>(row[v]) - mx);
            const double lse = mx + std::log(z);
            st.tokens.push_back(y);
            st.logprob.push_back(static_cast<double>(row[y]) - lse);
            st.match.push_back(arg == y ? 1 : 0);
            if (vocab_stats) {
              double m1 = 0, m2 = 0;
              for (int64_t v = 0; v < V; ++v) {
                const double lp = static_cast<double>(row[v]) - lse;
                const double p = std::exp(lp);
                m1 += p * lp;
                m2 += p * lp * lp;
              }
              st.mu.push_back(m1);
              st.var.push_back(m2 - m1 * m1);
            }
          }
          out.push_back(std::move(st));
        }
      });
  return out;
}

}  // namespace

// Data-parallel over the ranks of a run (eval/parallel.h); everything on one process.
std::vector<TokenStats> token_stats(const models::CausalLM& model,
                                    const std::vector<trainers::data::Sample>& samples,
                                    int64_t batch_size, bool vocab_stats) {
  const Block b = my_block(samples.size());
  return gather_items(token_stats_local(model, block_of(samples, b), batch_size, vocab_stats));
}

namespace {

std::vector<std::vector<int64_t>> greedy_local(const models::CausalLM& model,
                                               const std::vector<std::vector<int64_t>>& prompts,
                                               int64_t batch_size, int64_t max_new_tokens) {
  LETHE_CHECK(batch_size >= 1, "generation: batch size ", batch_size);
  std::vector<std::vector<int64_t>> out;
  const int64_t pad = model.batch_pad_id();
  const std::optional<int64_t> eos =
      model.eos_token_id() >= 0 ? std::optional<int64_t>(model.eos_token_id()) : std::nullopt;
  trainers::for_each_range(prompts.size(), batch_size, [&](size_t begin, size_t end) {
    size_t T = 0;
    for (size_t j = begin; j < end; ++j) {
      LETHE_CHECK(!prompts[j].empty(), "generation: prompt ", j, " is empty");
      T = std::max(T, prompts[j].size());
    }
    const size_t B = end - begin;
    std::vector<int64_t> ids(B * T, pad), mask(B * T, 0);  // left padding
    for (size_t b = 0; b < B; ++b) {
      const std::vector<int64_t>& p = prompts[begin + b];
      const size_t off = T - p.size();
      for (size_t t = 0; t < p.size(); ++t) {
        ids[b * T + off + t] = p[t];
        mask[b * T + off + t] = 1;
      }
    }
    const Shape shape{static_cast<int64_t>(B), static_cast<int64_t>(T)};
    models::GenerateOptions g;
    g.max_new_tokens =
        std::min<int64_t>(max_new_tokens, model.max_positions() - static_cast<int64_t>(T));
    g.eos_token_id = eos;
    std::vector<std::vector<int64_t>> toks;
    if (g.max_new_tokens > 0) {
      toks = model
                 .generate(Tensor::from_vector(ids, shape, DType::i64),
                           Tensor::from_vector(mask, shape, DType::i64), g)
                 .tokens;
    } else {
      toks.assign(B, {});
    }
    for (std::vector<int64_t>& t : toks) {
      if (!t.empty() && eos && t.back() == *eos) t.pop_back();
      out.push_back(std::move(t));
    }
  });
  return out;
}

}  // namespace

std::vector<std::vector<int64_t>> greedy_continuations(
    const models::CausalLM& model, const std::vector<std::vector<int64_t>>& prompts,
    int64_t batch_size, int64_t max_new_tokens) {
  const Block b = my_block(prompts.size());
  return gather_items(greedy_local(model, block_of(prompts, b), batch_size, max_new_tokens));
}

double mean_nll(const TokenStats& s) {
  if (s.logprob.empty()) return kNaN;
  double sum = 0;
  for (double lp : s.logprob) sum -= lp;
  return sum / static_cast<double>(s.logprob.size());
}

double min_k_plus_plus(const TokenStats& s, double k) {
  LETHE_CHECK(s.mu.size() == s.size() && s.var.size() == s.size(),
              "Min-K%++ needs the vocabulary statistics (token_stats with vocab_stats)");
  std::vector<double> z(s.size());
  for (size_t i = 0; i < s.size(); ++i)
    z[i] = (s.logprob[i] - s.mu[i]) / std::sqrt(std::max(s.var[i], 1e-6));
  return neg_mean_lowest(std::move(z), k);
}

double exact_memorization(const TokenStats& s) {
  if (s.match.empty()) return kNaN;
  double n = 0;
  for (uint8_t m : s.match) n += m;
  return n / static_cast<double>(s.match.size());
}

double extraction_strength(const TokenStats& s) {
  const size_t n = s.match.size();
  if (n == 0) return kNaN;
  size_t k = n;  // the matching suffix starts at k
  while (k > 0 && s.match[k - 1]) --k;
  return 1.0 - static_cast<double>(k) / static_cast<double>(n);
}

int64_t zlib_compressed_size(const std::string& text) {
  uLongf size = compressBound(static_cast<uLong>(text.size()));
  std::vector<Bytef> buf(size);
  const int rc = compress2(buf.data(), &size, reinterpret_cast<const Bytef*>(text.data()),
                           static_cast<uLong>(text.size()), Z_DEFAULT_COMPRESSION);
  LETHE_CHECK(rc == Z_OK, "zlib compress2 failed (", rc, ")");
  return static_cast<int64_t>(size);
}

const char* attack_name(Attack a) {
  switch (a) {
    case Attack::loss: return "loss";
    case Attack::zlib: return "zlib";
    case Attack::min_k: return "min_k";
    case Attack::min_k_plus_plus: return "min_k_plus_plus";
    case Attack::reference: return "reference";
  }
  return "?";
}

Attack parse_attack(const std::string& name) {
  for (Attack a :
       {Attack::loss, Attack::zlib, Attack::min_k, Attack::min_k_plus_plus, Attack::reference})
    if (name == attack_name(a)) return a;
  LETHE_FAIL("unknown membership-inference attack \"", name,
             "\" (loss, zlib, min_k, min_k_plus_plus, reference)");
}

const std::vector<double>& TextScores::of(Attack a) const {
  switch (a) {
    case Attack::loss: return loss;
    case Attack::zlib: return zlib;
    case Attack::min_k: return min_k;
    case Attack::min_k_plus_plus: return min_k_plus_plus;
    case Attack::reference: return reference;
  }
  return loss;
}

TextScores text_scores(const std::vector<TokenStats>& stats, const std::vector<std::string>& texts,
                       const std::vector<TokenStats>* reference, double k) {
  LETHE_CHECK(texts.size() == stats.size(), "text_scores: ", texts.size(), " texts for ",
              stats.size(), " statistics");
  LETHE_CHECK(!reference || reference->size() == stats.size(), "text_scores: reference has ",
              reference ? reference->size() : 0, " texts, expected ", stats.size());
  LETHE_CHECK(k > 0 && k <= 1, "Min-K %: k must be in (0, 1], got ", k);
  TextScores out;
  for (size_t i = 0; i < stats.size(); ++i) {
    const TokenStats& s = stats[i];
    const double loss = mean_nll(s);
    out.loss.push_back(loss);
    const int64_t zb = zlib_compressed_size(texts[i]);
    out.zlib_bytes.push_back(zb);
    out.zlib.push_back(loss / static_cast<double>(zb));
    out.min_k.push_back(neg_mean_lowest(s.logprob, k));
    if (s.mu.size() == s.size()) out.min_k_plus_plus.push_back(min_k_plus_plus(s, k));
    if (reference) out.reference.push_back(loss - mean_nll((*reference)[i]));
    out.exact_memorization.push_back(exact_memorization(s));
    out.extraction_strength.push_back(extraction_strength(s));
  }
  return out;
}

Perplexity perplexity(const std::vector<TokenStats>& stats) {
  Perplexity p;
  for (const TokenStats& s : stats) {
    double nll = 0;
    for (double lp : s.logprob) nll -= lp;
    p.nll_sum += nll;
    p.tokens += static_cast<int64_t>(s.size());
    p.per_text.push_back(s.size() ? std::exp(nll / static_cast<double>(s.size())) : kNaN);
  }
  p.perplexity = p.tokens ? std::exp(p.nll_sum / static_cast<double>(p.tokens)) : kNaN;
  return p;
}

}  // namespace lethe::eval
