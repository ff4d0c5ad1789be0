// KL-regularised GA with random answers (Yao et al.): ε₁∇(−nll(F)) + ε₂∇nll(prompt of F, random
// retain answers) + ε₃∇kl(R); every nll with reduction sample_mean unless the recipe says. The
// random-answer batch is this file's: each forget prompt with K answers of retain samples.
#include <algorithm>

#include "trainers/methods/method.h"

namespace lethe::trainers {

namespace {

// Forget prompts × K random retain answers, sample i·K + k. The k-th answer is the same retain
// sample for every prompt of the micro-batch (sequential pairing: retain samples (m·B + B + k)
// mod N; random: the random-answer stream's draws).
std::vector<data::Sample> random_answers(const BatchAccess& data, int64_t K, int64_t m,
                                         const std::vector<const data::Sample*>& forget) {
  std::vector<data::Sample> out;
  const size_t max_len = static_cast<size_t>(data.max_length());
  for (const data::Sample* f : forget) {
    const std::vector<int64_t> prompt = sample_prompt(*f);
    for (int64_t k = 0; k < K; ++k) {
      const int64_t r = data.random_answer_index(m, data.global_batch() + k);
      const std::vector<int64_t> answer = sample_answer(data.retain()[static_cast<size_t>(r)]);
      data::Sample s;
      s.input_ids = prompt;
      s.labels.assign(prompt.size(), -100);
      s.input_ids.insert(s.input_ids.end(), answer.begin(), answer.end());
      s.labels.insert(s.labels.end(), answer.begin(), answer.end());
      if (s.input_ids.size() > max_len) {
        s.input_ids.resize(max_len);
        s.labels.resize(max_len);
      }
      out.push_back(std::move(s));
    }
  }
  return out;
}

}  // namespace

MethodSpec ga_mismatch_kl_method() {
  MethodSpec s;
  s.name = "ga_mismatch_kl";
  s.summary = "GA on F, NLL of F's prompts with random retain answers, KL on R";
  s.keys = {
      {"epsilons", KeyType::nums, "[0.5, 1, 1]", "ga_mismatch_kl weights [forget, random, normal]",
       "", -INFINITY, INFINITY, 3},
      {"num_random_answers", KeyType::integer, "5", "ga_mismatch_kl: K random answers", "", 1, 64},
      reduction_key()};
  s.build = [](const MethodParams& p) {
    Method m;
    const Reduction red = nll_reduction(p, Reduction::sample_mean);
    m.objectives = {{"forget_nll", BatchKind::forget, LossKind::nll, -1.0, red},
                    {"random_nll", BatchKind::random, LossKind::nll, 1.0, red},
                    {"retain_kl", BatchKind::retain, LossKind::kl, 1.0}};
    const std::vector<double> eps = p.nums("epsilons");
    for (size_t i = 0; i < eps.size(); ++i)
      m.reported.emplace_back("method.epsilons[" + std::to_string(i) + "]", eps[i]);
    m.rule = weighted_rule(eps);
    const int64_t K = p.integer("num_random_answers");
    m.reported.emplace_back("method.num_random_answers", static_cast<double>(K));
    m.hooks.random_batch = [K](const BatchAccess& data, int64_t mb,
                               const std::vector<const data::Sample*>& forget) {
      return random_answers(data, K, mb, forget);
    };
    return m;
  };
  return s;
}

}  // namespace lethe::trainers
