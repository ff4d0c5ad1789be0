// A method = its objectives + a combination rule + its parameters (docs/methods.md). Each method
// is one small file (methods/<name>.cpp) that builds this from a recipe; the training loop is
// shared. Adding a method is one file and one line in registry.cpp.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "trainers/combine.h"
#include "trainers/config.h"
#include "trainers/objectives.h"

namespace lethe::trainers {

struct GenOptions {
  bool enabled = false;
  int64_t every = 4;
  std::string objective = "ngdiff";  // ngdiff | difference | retain
};

struct Method {
  std::string name;
  std::vector<Objective> objectives;
  Rule rule = Rule::weighted;
  std::vector<double> weights;  // Rule::weighted: one per objective
  MgdaOptions mgda;
  LossParams params;
  GenOptions gen;
  int64_t num_random_answers = 0;  // BatchKind::random batches: K answers per forget sample
  // Values this method used for its parameters (defaults included), for run.json.
  std::vector<std::pair<std::string, double>> reported;

  bool needs_reference() const;
  bool reads(BatchKind b) const;
};

// The method named by method.name (unlearn) or supervised fine-tuning (finetune).
Method make_method(const Config& config);

// ---- the registry: one builder per method file -------------------------------------------------
Method make_ga(const Config&);
Method make_graddiff(const Config&);
Method make_ga_mismatch_kl(const Config&);
Method make_npo(const Config&);
Method make_simnpo(const Config&);
Method make_mollm(const Config&);
Method make_ngdiff(const Config&);
Method make_sft(const Config&);

// Helpers the method files share.
Reduction nll_reduction(const Config& c, Reduction fallback = Reduction::token_mean);
// The retain term of graddiff/npo: nll (with the method's reduction) or kl.
Objective retain_objective(const Config& c, Reduction nll_red);
// Reads an optional number and records it in m.reported.
double param(Method& m, const Config& c, const std::string& key, double fallback);

}  // namespace lethe::trainers
