// Learning-rate schedules: the same double arithmetic, in the same order, as transformers.
#include "engine/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "engine/error.h"

namespace lethe {

LrScheduleKind parse_lr_schedule_kind(const std::string& name) {
  if (name == "constant") return LrScheduleKind::constant;
  if (name == "constant_with_warmup") return LrScheduleKind::constant_with_warmup;
  if (name == "linear") return LrScheduleKind::linear;
  if (name == "cosine") return LrScheduleKind::cosine;
  LETHE_FAIL("unknown learning-rate schedule '", name,
             "' (expected constant, constant_with_warmup, linear or cosine)");
}

const char* lr_schedule_kind_name(LrScheduleKind kind) {
  switch (kind) {
    case LrScheduleKind::constant: return "constant";
    case LrScheduleKind::constant_with_warmup: return "constant_with_warmup";
    case LrScheduleKind::linear: return "linear";
    case LrScheduleKind::cosine: return "cosine";
  }
  return "?";
}

LrSchedule::LrSchedule(LrScheduleKind kind, double base_lr, int64_t warmup_steps,
                       int64_t total_steps, double num_cycles)
    : kind_(kind),
      base_lr_(base_lr),
      warmup_steps_(warmup_steps),
      total_steps_(total_steps),
      num_cycles_(num_cycles) {
  const char* k = lr_schedule_kind_name(kind);
  LETHE_CHECK(std::isfinite(base_lr) && base_lr >= 0.0, "lr schedule ", k,
              ": invalid base learning rate ", base_lr, " (must be finite and >= 0)");
  LETHE_CHECK(warmup_steps >= 0, "lr schedule ", k, ": negative warmup_steps ", warmup_steps);
  if (kind == LrScheduleKind::linear || kind == LrScheduleKind::cosine) {
    LETHE_CHECK(total_steps > 0, "lr schedule ", k, ": total_steps must be > 0 (got ", total_steps,
                ")");
    LETHE_CHECK(warmup_steps <= total_steps, "lr schedule ", k, ": warmup_steps ", warmup_steps,
                " exceeds total_steps ", total_steps);
  }
  LETHE_CHECK(kind != LrScheduleKind::cosine || (std::isfinite(num_cycles) && num_cycles > 0.0),
              "lr schedule cosine: invalid num_cycles ", num_cycles, " (must be > 0)");
}

double LrSchedule::factor_at(int64_t step) const {
  LETHE_CHECK(step >= 0, "lr schedule ", lr_schedule_kind_name(kind_), ": negative step ", step);
  if (kind_ == LrScheduleKind::constant) return 1.0;
  if (step < warmup_steps_) {
    return static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, warmup_steps_));
  }
  const double decay_steps =
      static_cast<double>(std::max<int64_t>(1, total_steps_ - warmup_steps_));
  switch (kind_) {
    case LrScheduleKind::linear:
      return std::max(0.0, static_cast<double>(total_steps_ - step) / decay_steps);
    case LrScheduleKind::cosine: {
      const double progress = static_cast<double>(step - warmup_steps_) / decay_steps;
      return std::max(0.0, 0.5 * (1.0 + std::cos(std::numbers::pi * num_cycles_ * 2.0 * progress)));
    }
    default: return 1.0;  // constant_with_warmup after the warm-up
  }
}

}  // namespace lethe
