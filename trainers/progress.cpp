// Progress bar / progress lines for training runs.
#include "trainers/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <sstream>

namespace lethe::trainers {

Progress::Progress(std::ostream& out, int64_t total, int64_t every, bool terminal)
    : out_(out),
      total_(total),
      every_(every < 1 ? 1 : every),
      terminal_(terminal),
      start_(std::chrono::steady_clock::now()) {}

bool Progress::stderr_is_terminal() {
  return isatty(STDERR_FILENO) == 1;
}

std::string Progress::format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const int64_t t = static_cast<int64_t>(s + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(t / 3600),
                static_cast<long long>(t / 60 % 60), static_cast<long long>(t % 60));
  return buf;
}

void Progress::update(int64_t step, const std::vector<std::pair<std::string, double>>& values,
                      double lr, double tokens, double step_seconds) {
  if (first_step_ < 0) {
    // The clock of the ETA starts when the first step of this invocation started.
    first_step_ = step - 1;
    start_ = std::chrono::steady_clock::now() -
             std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                 std::chrono::duration<double>(step_seconds > 0 ? step_seconds : 0));
    tokens_ = 0;
    step_seconds_ = 0;
  }
  if (step_seconds > 0) {  // a step without a measured time adds to neither sum
    tokens_ += tokens;
    step_seconds_ += step_seconds;
  }
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const int64_t done = step - first_step_;
  const double per_step = done > 0 ? elapsed / static_cast<double>(done) : 0;
  const double eta = per_step * static_cast<double>(total_ - step);
  if (!terminal_ && step % every_ != 0 && step != total_) return;

  std::ostringstream line;
  if (terminal_) {
    const int width = 20;
    const int filled = total_ > 0 ? static_cast<int>(width * step / total_) : width;
    line << '[' << std::string(static_cast<size_t>(filled), '#')
         << std::string(static_cast<size_t>(width - filled), '.') << "] ";
  }
  line << "step " << step << '/' << total_;
  char buf[64];
  for (const auto& [name, v] : values) {
    std::snprintf(buf, sizeof buf, " %s %.4g", name.c_str(), v);
    line << buf;
  }
  std::snprintf(buf, sizeof buf, " | lr %.3g | %.0f tok/s | ETA %s", lr,
                step_seconds_ > 0 ? tokens_ / step_seconds_ : 0.0, format_duration(eta).c_str());
  line << buf;
  if (terminal_) {
    out_ << '\r' << line.str() << "\x1b[K" << std::flush;
    open_line_ = true;
  } else {
    out_ << line.str() << '\n' << std::flush;
  }
}

void Progress::message(const std::string& text) {
  if (open_line_) out_ << '\n';
  open_line_ = false;
  out_ << text << '\n' << std::flush;
}

void Progress::finish() {
  if (open_line_) out_ << '\n' << std::flush;
  open_line_ = false;
}

}  // namespace lethe::trainers
