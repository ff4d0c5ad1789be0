// See run_record.h. Each field is written and read in the same order, one function apart.
#include "trainers/run_record.h"

#include <cmath>
#include <cstdint>
#include <limits>

#include "engine/error.h"

namespace lethe::trainers {

namespace {

nlohmann::json finite_or_null(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
}

}  // namespace

nlohmann::ordered_json step_to_json(const StepRecord& r, const RecordLayout& layout) {
  nlohmann::ordered_json j;
  j["step"] = r.step;
  j["lr"] = r.lr;
  for (size_t k = 0; k < layout.objectives.size(); ++k) {
    const std::string& n = layout.objectives[k];
    j["loss"][n] = r.losses[k];
    j["grad_norm"][n] = r.grad_norms[k];
    j["weight"][n] = r.weights[k];
    if (layout.excluded) j["excluded"][n] = static_cast<bool>(r.excluded[k]);
  }
  if (!r.solution.empty()) j["solution"] = r.solution;
  j["direction_norm"] = r.direction_norm;
  j["tokens"] = r.tokens;
  j["seconds"] = r.seconds;
  if (layout.comm) j["comm_seconds"] = r.comm_seconds;
  if (!layout.hook_key.empty() && !r.hook.is_null()) j[layout.hook_key] = r.hook;
  return j;
}

nlohmann::ordered_json eval_to_json(const EvalRecord& e) {
  nlohmann::ordered_json row = {{"step", e.step},
                                {"forget_nll", finite_or_null(e.forget_nll)},
                                {"retain_nll", finite_or_null(e.retain_nll)}};
  if (std::isfinite(e.model_utility)) {
    row["model_utility"] = e.model_utility;
    row["forget_rouge"] = finite_or_null(e.forget_rouge);
    row["forget_quality"] =
        e.forget_quality >= 0 ? nlohmann::json(e.forget_quality) : nlohmann::json(nullptr);
  }
  return row;
}

nlohmann::ordered_json state_to_json(const CheckpointState& s) {
  return {{"steps_done", s.steps_done},
          {"optimizer_steps", s.optimizer_steps},
          {"base_lr", s.base_lr},
          {"best_score", finite_or_null(s.best_score)},
          {"best_step", s.best_step}};
}

CheckpointState parse_checkpoint_state(const nlohmann::json& state, const std::string& path,
                                       int64_t total_steps, const RecordLayout& layout) {
  CheckpointState cs;
  auto bad = [&](const std::string& what) {
    return Error(path + ": " + what + " (a damaged checkpoint? remove its folder to start over)");
  };
  auto at = [&](const nlohmann::json& j, const std::string& key,
                const std::string& where) -> const nlohmann::json& {
    if (!j.is_object() || !j.contains(key)) throw bad(where + key + " is missing");
    return j[key];
  };
  auto whole = [&](const nlohmann::json& j, const std::string& name, int64_t lo, int64_t hi) {
    if (!j.is_number_integer()) throw bad(name + " must be a whole number, got " + j.dump());
    const bool too_big =
        j.is_number_unsigned() && j.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX);
    const int64_t v = too_big ? INT64_MAX : j.get<int64_t>();
    if (too_big || v < lo || v > hi)
      throw bad(name + " = " + j.dump() + " is outside [" + std::to_string(lo) + ", " +
                std::to_string(hi) + "]");
    return v;
  };
  auto real = [&](const nlohmann::json& j, const std::string& name, double lo, bool nullable) {
    if (nullable && j.is_null()) return std::numeric_limits<double>::quiet_NaN();
    if (!j.is_number() || !std::isfinite(j.get<double>()) || j.get<double>() < lo)
      throw bad(name + " must be a finite number" + (lo == 0 ? " >= 0" : "") + ", got " + j.dump());
    return j.get<double>();
  };
  // ---- state (state_to_json)
  const nlohmann::json& s = at(state, "state", "");
  const nlohmann::json& done = at(s, "steps_done", "state.");
  const bool beyond = done.is_number_unsigned()
                          ? done.get<uint64_t>() >= static_cast<uint64_t>(total_steps)
                          : done.is_number_integer() && done.get<int64_t>() >= total_steps;
  if (beyond)
    throw Error(path + ": the run already did " + done.dump() + " of " +
                std::to_string(total_steps) + " steps");
  cs.steps_done = whole(done, "state.steps_done", 1, total_steps - 1);
  cs.optimizer_steps =
      whole(at(s, "optimizer_steps", "state."), "state.optimizer_steps", 0, cs.steps_done);
  cs.base_lr = real(at(s, "base_lr", "state."), "state.base_lr", 0, false);
  cs.best_score = real(at(s, "best_score", "state."), "state.best_score", -INFINITY, true);
  cs.best_step = whole(at(s, "best_step", "state."), "state.best_step", -1, cs.steps_done);
  // ---- steps (step_to_json)
  const nlohmann::json& steps = at(state, "steps", "");
  if (!steps.is_array() || static_cast<int64_t>(steps.size()) != cs.steps_done)
    throw bad("steps must list the " + std::to_string(cs.steps_done) + " steps done, it has " +
              (steps.is_array() ? std::to_string(steps.size()) : steps.dump()));
  for (size_t i = 0; i < steps.size(); ++i) {
    const nlohmann::json& r = steps[i];
    const std::string w = "steps[" + std::to_string(i) + "].";
    StepRecord rec;
    rec.step = whole(at(r, "step", w), w + "step", static_cast<int64_t>(i) + 1,
                     static_cast<int64_t>(i) + 1);
    rec.lr = real(at(r, "lr", w), w + "lr", 0, false);
    for (const std::string& name : layout.objectives) {
      auto field = [&](const char* f) -> const nlohmann::json& {
        return at(at(r, f, w), name, w + f + ".");
      };
      rec.losses.push_back(real(field("loss"), w + "loss." + name, -INFINITY, false));
      rec.grad_norms.push_back(real(field("grad_norm"), w + "grad_norm." + name, 0, false));
      rec.weights.push_back(real(field("weight"), w + "weight." + name, -INFINITY, false));
      bool excluded = false;
      if (r.contains("excluded")) {
        const nlohmann::json& e = at(r["excluded"], name, w + "excluded.");
        if (!e.is_boolean()) throw bad(w + "excluded." + name + " must be true or false");
        excluded = e.get<bool>();
      }
      rec.excluded.push_back(excluded);
    }
    if (r.contains("solution")) {
      if (!r["solution"].is_string()) throw bad(w + "solution must be a string");
      rec.solution = r["solution"].get<std::string>();
    }
    rec.direction_norm = real(at(r, "direction_norm", w), w + "direction_norm", 0, false);
    rec.tokens = real(at(r, "tokens", w), w + "tokens", 0, false);
    rec.seconds = real(at(r, "seconds", w), w + "seconds", 0, false);
    if (r.contains("comm_seconds"))
      rec.comm_seconds = real(r["comm_seconds"], w + "comm_seconds", 0, false);
    if (!layout.hook_key.empty() && r.contains(layout.hook_key)) {
      if (!r[layout.hook_key].is_object()) throw bad(w + layout.hook_key + " must be an object");
      rec.hook = r[layout.hook_key];
    }
    cs.steps.push_back(rec);
  }
  // ---- evaluations (eval_to_json)
  const nlohmann::json& ev = at(state, "eval", "");
  if (!ev.is_array()) throw bad("eval must be a list, got " + ev.dump());
  for (size_t i = 0; i < ev.size(); ++i) {
    const std::string w = "eval[" + std::to_string(i) + "].";
    EvalRecord er;
    er.step = whole(at(ev[i], "step", w), w + "step", 0, cs.steps_done);
    er.forget_nll = real(at(ev[i], "forget_nll", w), w + "forget_nll", -INFINITY, true);
    er.retain_nll = real(at(ev[i], "retain_nll", w), w + "retain_nll", -INFINITY, true);
    if (ev[i].contains("model_utility")) {
      er.model_utility = real(ev[i]["model_utility"], w + "model_utility", 0, false);
      er.forget_rouge = real(at(ev[i], "forget_rouge", w), w + "forget_rouge", 0, true);
      const double fq = real(at(ev[i], "forget_quality", w), w + "forget_quality", 0, true);
      er.forget_quality = std::isnan(fq) ? -1 : fq;
    }
    cs.evals.push_back(er);
  }
  return cs;
}

}  // namespace lethe::trainers
