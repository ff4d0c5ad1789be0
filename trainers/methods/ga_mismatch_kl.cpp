// KL-regularised GA with random answers (Yao et al.): ε₁∇(−nll(F)) + ε₂∇nll(prompt of F, random
// retain answers) + ε₃∇kl(R); every nll with reduction sample_mean unless the recipe says.
#include "engine/error.h"
#include "trainers/methods/method.h"

namespace lethe::trainers {

Method make_ga_mismatch_kl(const Config& c) {
  Method m;
  const Reduction red = nll_reduction(c, Reduction::sample_mean);
  m.objectives = {{"forget_nll", BatchKind::forget, LossKind::nll, -1.0, red},
                  {"random_nll", BatchKind::random, LossKind::nll, 1.0, red},
                  {"retain_kl", BatchKind::retain, LossKind::kl, 1.0}};
  m.rule = Rule::weighted;
  m.weights = c.has("method.epsilons") ? c.nums("method.epsilons") : std::vector<double>{0.5, 1, 1};
  for (size_t i = 0; i < m.weights.size(); ++i)
    m.reported.emplace_back("method.epsilons[" + std::to_string(i) + "]", m.weights[i]);
  m.num_random_answers = c.integer_or("method.num_random_answers", 5);
  m.reported.emplace_back("method.num_random_answers", static_cast<double>(m.num_random_answers));
  return m;
}

}  // namespace lethe::trainers
