// method.name -> the method's builder, and the helpers the method files share.
#include <algorithm>
#include <map>

#include "engine/error.h"
#include "trainers/methods/method.h"

namespace lethe::trainers {

bool Method::needs_reference() const {
  for (const Objective& o : objectives)
    if (needs_reference_logits(o.loss) || needs_reference_nll(o.loss)) return true;
  return false;
}

bool Method::reads(BatchKind b) const {
  for (const Objective& o : objectives)
    if (o.batch == b) return true;
  return false;
}

namespace {

// The method.* keys each method reads; any other one in a recipe is a mistake (a parameter of
// another method) and is refused rather than silently ignored.
void check_method_keys(const Config& c, const std::string& method) {
  static const std::map<std::string, std::vector<std::string>> keys = {
      {"ga", {"reduction"}},
      {"graddiff", {"gamma", "alpha", "retain_loss", "reduction"}},
      {"ga_mismatch_kl", {"epsilons", "num_random_answers", "reduction"}},
      {"npo", {"beta", "gamma", "alpha", "retain_loss", "reduction"}},
      {"simnpo", {"beta", "delta", "gamma", "alpha", "reduction"}},
      {"mollm", {"c", "normalize_grads", "rescale_direction", "reduction"}},
      {"ngdiff", {"auto_lr", "auto_lr_every", "auto_lr_objective", "reduction"}},
      {"sft", {"reduction"}},
  };
  const std::vector<std::string>& allowed = keys.at(method);
  for (const auto& [key, value] : c.values()) {
    if (key.rfind("method.", 0) != 0 || key == "method.name") continue;
    // method.auto_lr: false is accepted by every method (scripts pass it to pin the update to
    // θ − lr·d); GeN itself is NGDiff's.
    if (key == "method.auto_lr" && !c.flag(key)) continue;
    const std::string p = key.substr(7);
    if (std::find(allowed.begin(), allowed.end(), p) != allowed.end()) continue;
    std::string list;
    for (const std::string& a : allowed) list += (list.empty() ? "method." : ", method.") + a;
    LETHE_FAIL(c.source(), ": ", key, " is not a parameter of ", method, " (its parameters: ", list,
               ")");
  }
}

}  // namespace

Method make_method(const Config& c) {
  if (c.kind() == RunKind::finetune) {
    check_method_keys(c, "sft");
    return make_sft(c);
  }
  const std::string name = c.str("method.name");
  Method m;
  if (name == "ga")
    m = make_ga(c);
  else if (name == "graddiff")
    m = make_graddiff(c);
  else if (name == "ga_mismatch_kl")
    m = make_ga_mismatch_kl(c);
  else if (name == "npo")
    m = make_npo(c);
  else if (name == "simnpo")
    m = make_simnpo(c);
  else if (name == "mollm")
    m = make_mollm(c);
  else if (name == "ngdiff")
    m = make_ngdiff(c);
  else
    throw Error(c.source() + ": method.name '" + name + "' is not a method");
  m.name = name;
  check_method_keys(c, name);
  LETHE_CHECK(c.kind() != RunKind::unlearn || !m.reads(BatchKind::retain) || c.has("data.retain"),
              c.source(), ": method ", name, " needs data.retain");
  return m;
}

Reduction nll_reduction(const Config& c, Reduction fallback) {
  if (!c.has("method.reduction")) return fallback;
  return c.str("method.reduction") == "sample_mean" ? Reduction::sample_mean
                                                    : Reduction::token_mean;
}

Objective retain_objective(const Config& c, Reduction nll_red) {
  if (c.str_or("method.retain_loss", "nll") == "kl")
    return {"retain_kl", BatchKind::retain, LossKind::kl, 1.0};
  return {"retain_nll", BatchKind::retain, LossKind::nll, 1.0, nll_red};
}

double param(Method& m, const Config& c, const std::string& key, double fallback) {
  const double v = c.num_or(key, fallback);
  m.reported.emplace_back(key, v);
  return v;
}

}  // namespace lethe::trainers
