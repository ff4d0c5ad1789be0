// The progress display of a run on stderr: a bar redrawn in place on a terminal, plain lines
// otherwise (logs, CI). Knows nothing about models or methods: it prints what it is given.
#pragma once

#include <chrono>
#include <cstdint>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

namespace lethe::trainers {

class Progress {
 public:
  // `total` steps; `every`: print a plain line every N steps (a terminal redraws every step).
  Progress(std::ostream& out, int64_t total, int64_t every, bool terminal);
  // After step `step` (1-based count of steps done): named values, lr, the step's tokens and the
  // seconds its compute took. tokens/s is tokens over those seconds, summed over the steps of this
  // invocation (evaluations and checkpoints between steps do not count); the ETA uses wall time.
  void update(int64_t step, const std::vector<std::pair<std::string, double>>& values, double lr,
              double tokens, double step_seconds);
  // A message on its own line (the bar is redrawn after it).
  void message(const std::string& text);
  void finish();
  static bool stderr_is_terminal();
  static std::string format_duration(double seconds);

 private:
  std::ostream& out_;
  int64_t total_, every_;
  bool terminal_;
  bool open_line_ = false;
  double tokens_ = 0, step_seconds_ = 0;
  std::chrono::steady_clock::time_point start_;
  int64_t first_step_ = -1;
};

}  // namespace lethe::trainers
