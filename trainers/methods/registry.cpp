// The method registry: the built-in specs of methods/list.h plus any registered at run time, the
// typed reading of a method's keys, and the helpers the method files share.
#include <algorithm>
#include <cmath>
#include <mutex>

#include "engine/error.h"
#include "trainers/methods/method.h"

namespace lethe::trainers {

// Each method file defines one `MethodSpec <name>_method()`; the list names them once.
#define LETHE_METHOD(name) MethodSpec name##_method();
#include "trainers/methods/list.h"
#undef LETHE_METHOD
MethodSpec sft_method();
MethodSpec classifier_method();

namespace {

std::vector<MethodSpec>& registry() {
  static std::vector<MethodSpec> specs = [] {
    std::vector<MethodSpec> v;
#define LETHE_METHOD(name) v.push_back(name##_method());
#include "trainers/methods/list.h"
#undef LETHE_METHOD
    return v;
  }();
  return specs;
}

bool same_kind(const KeySpec& a, const KeySpec& b) {
  return a.type == b.type && a.choices == b.choices && a.lo == b.lo && a.hi == b.hi &&
         a.count == b.count;
}

}  // namespace

const std::vector<MethodSpec>& method_specs() {
  return registry();
}

const MethodSpec* find_method(const std::string& name) {
  for (const MethodSpec& s : registry())
    if (s.name == name) return &s;
  return nullptr;
}

const MethodSpec& sft_spec() {
  static const MethodSpec spec = sft_method();
  return spec;
}

const MethodSpec& classifier_spec() {
  static const MethodSpec spec = classifier_method();
  return spec;
}

void register_method(MethodSpec spec) {
  LETHE_CHECK(!spec.name.empty() && spec.build,
              "register_method: a method needs a name and a "
              "builder");
  LETHE_CHECK(find_method(spec.name) == nullptr, "register_method: method '", spec.name,
              "' is already registered");
  for (const KeySpec& k : spec.keys)
    for (const MethodSpec& other : registry())
      for (const KeySpec& o : other.keys)
        LETHE_CHECK(o.name != k.name || same_kind(o, k), "register_method: method.", k.name, " of ",
                    spec.name, " has another type or range than ", other.name, "'s");
  registry().push_back(std::move(spec));
  config_schema_changed();
}

// ---- MethodParams -------------------------------------------------------------------------------

const KeySpec& MethodParams::spec(const std::string& key) const {
  for (const KeySpec& k : keys_)
    if (k.name == key) return k;
  throw Error("method " + method_ + " reads method." + key + ", which it does not declare");
}

bool MethodParams::given(const std::string& key) const {
  spec(key);
  return config_.has("method." + key);
}

std::string MethodParams::text(const std::string& key) const {
  const KeySpec& k = spec(key);
  if (config_.has("method." + key)) return config_.str("method." + key);
  LETHE_CHECK(k.def != nullptr, "method ", method_, ": method.", key,
              " has no value and no default");
  return k.def;
}

double MethodParams::num(const std::string& key) const {
  if (config_.has("method." + key)) return config_.num("method." + key);
  return std::stod(text(key));
}

int64_t MethodParams::integer(const std::string& key) const {
  if (config_.has("method." + key)) return config_.integer("method." + key);
  return std::stoll(text(key));
}

bool MethodParams::flag(const std::string& key) const {
  if (config_.has("method." + key)) return config_.flag("method." + key);
  return text(key) == "true";
}

std::string MethodParams::str(const std::string& key) const {
  return text(key);
}

std::vector<double> MethodParams::nums(const std::string& key) const {
  if (config_.has("method." + key)) return config_.nums("method." + key);
  return parse_number_list("method " + method_, "method." + key, text(key));
}

// ---- building ---------------------------------------------------------------------------------

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

Rule weighted_rule(std::vector<double> weights) {
  return {"weighted",
          [w = std::move(weights)](const std::vector<double>& gram) {
            return combine_weighted(gram, w);
          },
          false};
}

namespace {

// The method.* keys a method declares; any other one in a recipe is a mistake (a parameter of
// another method) and is refused rather than silently ignored.
void check_method_keys(const Config& c, const MethodSpec& spec) {
  for (const auto& [key, value] : c.values()) {
    if (key.rfind("method.", 0) != 0 || key == "method.name") continue;
    // method.auto_lr: false is accepted by every method (scripts pass it to pin the update to
    // θ − lr·d); GeN itself is NGDiff's.
    if (key == "method.auto_lr" && !c.flag(key)) continue;
    const std::string p = key.substr(7);
    bool known = false;
    for (const KeySpec& k : spec.keys) known = known || k.name == p;
    if (known) continue;
    std::string list;
    for (const KeySpec& k : spec.keys) list += (list.empty() ? "method." : ", method.") + k.name;
    LETHE_FAIL(c.source(), ": ", key, " is not a parameter of ", spec.name,
               " (its parameters: ", list, ")");
  }
}

}  // namespace

Method make_method(const Config& c) {
  const MethodSpec* spec = c.kind() == RunKind::finetune && c.str("model.head") == "classifier"
                               ? &classifier_spec()
                               : &sft_spec();
  if (c.kind() != RunKind::finetune) {
    const std::string name = c.str("method.name");
    spec = find_method(name);
    if (spec == nullptr) throw Error(c.source() + ": method.name '" + name + "' is not a method");
  }
  check_method_keys(c, *spec);
  Method m = spec->build(MethodParams(c, spec->keys, spec->name));
  m.name = spec->name;
  LETHE_CHECK(c.kind() != RunKind::unlearn || !m.reads(BatchKind::retain) || c.has("data.retain"),
              c.source(), ": method ", m.name, " needs data.retain");
  LETHE_CHECK(m.rule.combine != nullptr, "method ", m.name, " has no combination rule");
  LETHE_CHECK(!m.reads(BatchKind::random) || m.hooks.random_batch, "method ", m.name,
              " reads random-answer batches but builds none");
  return m;
}

// ---- shared keys and helpers --------------------------------------------------------------------

KeySpec reduction_key() {
  return {"reduction", KeyType::choice, nullptr, "reduction of every nll term",
          "token_mean|sample_mean"};
}
KeySpec gamma_key(const char* def) {
  return {"gamma", KeyType::num, def, "weight of the forget term", "", 0, INFINITY};
}
KeySpec alpha_key(const char* def) {
  return {"alpha", KeyType::num, def, "weight of the retain term", "", 0, INFINITY};
}
KeySpec beta_key(const char* def) {
  return {"beta", KeyType::num, def, "NPO/SimNPO inverse temperature", "", 1e-12, INFINITY};
}
KeySpec retain_loss_key() {
  return {"retain_loss", KeyType::choice, "nll", "retain term: nll or kl to the reference",
          "nll|kl"};
}

Reduction nll_reduction(const MethodParams& p, Reduction fallback) {
  if (!p.given("reduction")) return fallback;
  return p.str("reduction") == "sample_mean" ? Reduction::sample_mean : Reduction::token_mean;
}

Objective retain_objective(const MethodParams& p, Reduction nll_red) {
  if (p.str("retain_loss") == "kl") return {"retain_kl", BatchKind::retain, LossKind::kl, 1.0};
  return {"retain_nll", BatchKind::retain, LossKind::nll, 1.0, nll_red};
}

double report(Method& m, const MethodParams& p, const std::string& key) {
  const double v = p.num(key);
  m.reported.emplace_back("method." + key, v);
  return v;
}

}  // namespace lethe::trainers
