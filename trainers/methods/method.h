// A method = its objectives + a combination rule over their gradients + optional hooks
// (docs/methods.md, docs/architecture.md). Each method is one file, methods/<name>.cpp, holding a
// MethodSpec: its recipe keys (type, default, range, help), the data it reads, and a builder from
// those keys to a Method. methods/list.h names every file's spec once; registry.cpp serves them to
// the recipe schema, `--keys` and the training loop, which is shared.
#pragma once

#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "trainers/combine.h"
#include "trainers/config.h"
#include "trainers/objectives.h"

namespace lethe::trainers {

// ---- keys -------------------------------------------------------------------------------------

enum class KeyType { str, num, integer, flag, choice, nums, path };

// One recipe key: its dotted name, type, default ("" with has_default false = optional), range
// and help. The recipe schema (config.cpp) is a list of these; each method contributes its own
// method.* keys.
struct KeySpec {
  std::string name;  // for a method's key: without "method." ("beta")
  KeyType type = KeyType::str;
  const char* def = nullptr;  // nullptr: no default
  std::string help;
  std::string choices = "";  // KeyType::choice: '|'-separated
  double lo = -INFINITY, hi = INFINITY;
  size_t count = 0;  // KeyType::nums: the list's length (0 = any)
};

// A method's keys as one run resolved them: the recipe's value, else the key's default. Reading a
// key the method did not declare is a programming error (lethe::Error naming it).
class MethodParams {
 public:
  MethodParams(const Config& config, const std::vector<KeySpec>& keys, const std::string& method)
      : config_(config), keys_(keys), method_(method) {}
  double num(const std::string& key) const;
  int64_t integer(const std::string& key) const;
  bool flag(const std::string& key) const;
  std::string str(const std::string& key) const;  // str and choice keys
  std::vector<double> nums(const std::string& key) const;
  bool given(const std::string& key) const;  // set in the recipe or by --set
  const Config& config() const { return config_; }

 private:
  const KeySpec& spec(const std::string& key) const;
  std::string text(const std::string& key) const;
  const Config& config_;
  const std::vector<KeySpec>& keys_;
  std::string method_;
};

// ---- hooks ------------------------------------------------------------------------------------

// What the training loop lends a method's hook between the combination rule and the update: the
// rate the step is about to apply, the update direction, the trainable weights and a probe loss
// on the next micro-batch pair. Implemented by the loop (trainers/loop.cpp).
class StepAccess {
 public:
  virtual ~StepAccess() = default;
  virtual int64_t step() const = 0;    // 0-based index of this step
  virtual double lr() const = 0;       // the rate this step will apply
  virtual void set_lr(double lr) = 0;  // this step's rate; the schedule follows it
  virtual double grad_norm(size_t objective) const = 0;
  // The optimizer's update u for the current direction (θ ← θ − lr·u); whole on every rank.
  virtual Tensor preview_update() = 0;
  // The trainable weights (a flat view): a hook that moves them must put them back.
  virtual Tensor weights() = 0;
  // The mean NLL (token or sample mean, as `reduction` says) of the current weights on the
  // forget or retain micro-batch that the next step starts with, over every rank; no gradient.
  virtual double probe_nll(BatchKind kind, Reduction reduction) = 0;
};

// What a hook may see of the data when it builds a batch of its own (ga_mismatch_kl's random
// answers): the retain set and the loop's seeded draws over it.
class BatchAccess {
 public:
  virtual ~BatchAccess() = default;
  virtual const std::vector<data::Sample>& retain() const = 0;
  // A retain index for (micro-batch m, slot i) from the random-answer stream (data.pairing
  // random) or the sequential order (sequential), the same on every rank.
  virtual int64_t random_answer_index(int64_t m, int64_t slot) const = 0;
  virtual int64_t global_batch() const = 0;  // samples per global micro-batch
  virtual int64_t max_length() const = 0;    // data.max_length capped by the model's positions
};

struct MethodHooks {
  // Builds the BatchKind::random samples of micro-batch m from this rank's forget samples.
  std::function<std::vector<data::Sample>(const BatchAccess&, int64_t m,
                                          const std::vector<const data::Sample*>& forget)>
      random_batch;
  // Called after the rule, before the update (only on steps whose rate is above 0). It may change
  // the rate through StepAccess::set_lr and report what it did in `report` (run.json's step row).
  std::function<void(StepAccess&, nlohmann::ordered_json& report)> before_update;
  // run.json's key for `report` (e.g. "gen").
  std::string report_key;
};

// ---- the method -------------------------------------------------------------------------------

// The rule: the Gram matrix of the objectives' gradients (K×K, row-major) → the coefficients of
// d = Σₖ cₖ gₖ and what run.json reports.
struct Rule {
  std::string name;  // "weighted", "ngdiff", "mgda", …
  std::function<Combination(const std::vector<double>& gram)> combine;
  bool reports_excluded = false;  // run.json lists which objectives the rule left out
};

Rule weighted_rule(std::vector<double> weights);

struct Method {
  std::string name;
  std::vector<Objective> objectives;
  Rule rule;
  LossParams params;
  MethodHooks hooks;
  // Values this method used for its parameters (defaults included), for run.json.
  std::vector<std::pair<std::string, double>> reported;
  bool needs_reference() const;
  bool reads(BatchKind b) const;
};

// A method as its file declares it.
struct MethodSpec {
  std::string name;           // method.name
  std::string summary;        // one line for `--keys`
  std::vector<KeySpec> keys;  // its method.* keys, without the "method." prefix
  bool needs_retain = true;   // requires data.retain
  std::function<Method(const MethodParams&)> build;
};

// Every method: the built-in ones of methods/list.h, then any registered at run time.
const std::vector<MethodSpec>& method_specs();
const MethodSpec* find_method(const std::string& name);
// Adds a method (embedding programs, tests). Its name must be new and its keys must agree in type
// with any other method's key of the same name.
void register_method(MethodSpec spec);
// Supervised fine-tuning (lethe finetune)'s spec: not an unlearning method.
const MethodSpec& sft_spec();
// A sequence classifier's fine-tuning (lethe finetune with model.head: classifier).
const MethodSpec& classifier_spec();

// The method named by method.name (unlearn), or for finetune supervised fine-tuning or, with
// model.head: classifier, the classifier's; its method.* keys checked against the ones it
// declares.
Method make_method(const Config& config);

// ---- helpers the method files share -----------------------------------------------------------

// The keys most methods share (their help is the same; defaults differ per method).
KeySpec reduction_key();  // method.reduction: token_mean | sample_mean (default: token_mean)
KeySpec gamma_key(const char* def);
KeySpec alpha_key(const char* def);
KeySpec beta_key(const char* def);  // method.beta: NPO/SimNPO inverse temperature
KeySpec retain_loss_key();          // method.retain_loss: nll | kl

Reduction nll_reduction(const MethodParams& p, Reduction fallback = Reduction::token_mean);
// The retain term of graddiff/npo: nll (with the method's reduction) or kl.
Objective retain_objective(const MethodParams& p, Reduction nll_red);
// Reads a number key and records it in m.reported.
double report(Method& m, const MethodParams& p, const std::string& key);

}  // namespace lethe::trainers
