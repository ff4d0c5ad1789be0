// Gradient-combination rules: from the objectives' gradient norms and Gram matrix to the
// coefficients of d = Σₖ cₖ gₖ (ParameterStore::combine writes d). Pure math on K×K numbers: no
// tensors, so a rule never touches a d-dimensional buffer and is the same on every device.
#pragma once

#include <string>
#include <vector>

namespace lethe::trainers {

struct MgdaOptions {
  double exclude_below = 1e-6;     // gradients with norm < this × the largest are left out
  bool normalize_grads = false;    // scale each gradient to the mean norm before the solve
  bool rescale_direction = false;  // scale d to the norm of the mean gradient
};

struct Combination {
  std::vector<double> coeffs;   // cₖ
  std::vector<double> weights;  // the rule's weights as reported: MGDA's λ, NGDiff's 1/‖g‖ …
  std::vector<bool> excluded;   // MGDA: objectives left out of the solve
  std::string solution;       // MGDA: "single", "interior", "edge:k,l" (objective indices), "zero"
  double direction_norm = 0;  // ‖d‖ = sqrt(cᵀGc)
};

// gram: K×K row-major Gram matrix of the objectives' gradients.
Combination combine_weighted(const std::vector<double>& gram, const std::vector<double>& weights);
// NGDiff over [forget, retain]: d = g_R/(‖g_R‖+ε) − g_F/(‖g_F‖+ε).
Combination combine_ngdiff(const std::vector<double>& gram, double eps = 1e-8);
// Min-norm point of the convex hull (docs/methods.md, "MGDA").
Combination combine_mgda(const std::vector<double>& gram, const MgdaOptions& options = {});

// min over the simplex of λᵀGλ for a K×K Gram matrix (K ≥ 1): interior (G⁻¹1, all positive) or
// the best edge. Returns λ and sets `solution` ("edge:i,j" names the pair by labels[i], labels[j]
// when labels are given).
std::vector<double> min_norm_simplex(const std::vector<double>& gram, int k,
                                     std::string* solution = nullptr,
                                     const std::vector<int>* labels = nullptr);

}  // namespace lethe::trainers
