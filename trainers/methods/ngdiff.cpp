// NGDiff: d = g_R/‖g_R‖ − g_F/‖g_F‖ over the forget and retain NLL gradients, with GeN's
// automatic learning rate on by default (docs/methods.md, "GeN"): every N steps it probes the
// objective at θ − r·η·u, r ∈ {−1, 0, 1}, on the next micro-batch pair, fits the parabola and
// moves η toward G/H.
#include <algorithm>
#include <cmath>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "trainers/methods/method.h"

namespace lethe::trainers {

namespace {

constexpr double kEps = 1e-8;

struct GenOptions {
  int64_t every = 4;
  std::string objective = "ngdiff";  // ngdiff | difference | retain
  Reduction reduction = Reduction::token_mean;
};

// The probe and the rate update of one step. Objective 0 is the forget NLL, 1 the retain NLL.
void gen_probe(const GenOptions& o, StepAccess& step, nlohmann::ordered_json& report) {
  if (step.step() % o.every != 0) return;
  const double eta = step.lr();
  const Tensor u = step.preview_update();
  Tensor weights = step.weights();
  Tensor saved;
  {
    NoGradGuard ng;
    saved = weights.clone();
  }
  const double nf = step.grad_norm(0) + kEps, nr = step.grad_norm(1) + kEps;
  auto objective = [&] {
    const double retain = step.probe_nll(BatchKind::retain, o.reduction);
    if (o.objective == "retain") return retain;
    const double forget = step.probe_nll(BatchKind::forget, o.reduction);
    if (o.objective == "difference") return retain - forget;
    return retain / nr - forget / nf;
  };
  auto at = [&](double r) {
    {
      NoGradGuard ng;
      weights.copy_(saved);
      if (r != 0) axpy_(weights, -r * eta, u);
    }
    return objective();
  };
  const double lm = at(-1), l0 = at(0), lp = at(1);
  {
    NoGradGuard ng;
    weights.copy_(saved);
  }
  double h = 0, g = 0, next = eta;
  bool accepted = false;
  if (!std::isfinite(lm) || !std::isfinite(l0) || !std::isfinite(lp)) {
    next = eta / 2;
  } else {
    h = (lp + lm - 2 * l0) / (eta * eta);
    g = (lm - lp) / (2 * eta);
    if (h > 0 && g > 0) {
      accepted = true;
      next = 0.9 * eta + 0.1 * std::clamp(g / h, eta / 2, 2 * eta);
    }
  }
  report = {{"loss_minus", lm}, {"loss_zero", l0},      {"loss_plus", lp},  {"h", h},
            {"g", g},           {"accepted", accepted}, {"lr_before", eta}, {"lr_after", next}};
  step.set_lr(next);
}

}  // namespace

MethodSpec ngdiff_method() {
  MethodSpec s;
  s.name = "ngdiff";
  s.summary = "normalised gradient difference with GeN's automatic learning rate";
  s.keys = {
      {"auto_lr", KeyType::flag, "true", "NGDiff: GeN automatic learning rate"},
      {"auto_lr_every", KeyType::integer, "4", "GeN: probe every N steps", "", 1, 1e9},
      {"auto_lr_objective", KeyType::choice, "ngdiff", "GeN objective", "ngdiff|difference|retain"},
      reduction_key()};
  s.build = [](const MethodParams& p) {
    Method m;
    const Reduction red = nll_reduction(p);
    m.objectives = {{"forget_nll", BatchKind::forget, LossKind::nll, 1.0, red},
                    {"retain_nll", BatchKind::retain, LossKind::nll, 1.0, red}};
    m.rule = {"ngdiff", [](const std::vector<double>& gram) { return combine_ngdiff(gram, kEps); },
              false};
    const bool gen = p.flag("auto_lr");
    GenOptions o;
    o.every = p.integer("auto_lr_every");
    o.objective = p.str("auto_lr_objective");
    o.reduction = red;
    m.reported.emplace_back("method.auto_lr", gen ? 1.0 : 0.0);
    m.reported.emplace_back("method.auto_lr_every", static_cast<double>(o.every));
    if (gen) {
      m.hooks.report_key = "gen";
      m.hooks.before_update = [o](StepAccess& step, nlohmann::ordered_json& report) {
        gen_probe(o, step, report);
      };
    }
    return m;
  };
  return s;
}

}  // namespace lethe::trainers
