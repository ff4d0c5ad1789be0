// Learning-rate schedules as functions of the step (HuggingFace transformers' schedules):
// constant, constant with warm-up, linear warm-up + linear decay, cosine with warm-up. No state.
#pragma once

#include <cstdint>
#include <string>

namespace lethe {

enum class LrScheduleKind : uint8_t { constant, constant_with_warmup, linear, cosine };

// "constant", "constant_with_warmup", "linear", "cosine"; throws naming the accepted values.
LrScheduleKind parse_lr_schedule_kind(const std::string& name);
const char* lr_schedule_kind_name(LrScheduleKind kind);

// lr_at(step) is the learning rate of the optimizer step with 0-based index `step`, exactly as
// torch's LambdaLR over transformers' get_*_schedule_with_warmup lambdas gives it (so with
// warm-up the first step has lr 0). Past total_steps the linear schedule stays at 0 and the cosine
// one follows the cosine formula, as transformers does.
class LrSchedule {
 public:
  LrSchedule(LrScheduleKind kind, double base_lr, int64_t warmup_steps = 0, int64_t total_steps = 0,
             double num_cycles = 0.5);
  double factor_at(int64_t step) const;  // the multiplier of base_lr
  double lr_at(int64_t step) const { return base_lr_ * factor_at(step); }

  LrScheduleKind kind() const { return kind_; }
  double base_lr() const { return base_lr_; }
  int64_t warmup_steps() const { return warmup_steps_; }
  int64_t total_steps() const { return total_steps_; }

 private:
  LrScheduleKind kind_;
  double base_lr_;
  int64_t warmup_steps_, total_steps_;
  double num_cycles_;
};

}  // namespace lethe
