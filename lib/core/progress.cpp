#include "core/progress.h"

#include <unistd.h>

#include <cstdio>

namespace kvscope {

Progress::Progress(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), start_(std::chrono::steady_clock::now()),
      last_print_(start_), tty_(::isatty(2)) {}

double Progress::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::update(int64_t done, const std::string& extra) {
  const auto now = std::chrono::steady_clock::now();
  const double since_start = std::chrono::duration<double>(now - start_).count();
  const double since_print = std::chrono::duration<double>(now - last_print_).count();
  if (since_start < 2.0 || since_print < (tty_ ? 0.25 : 10.0)) return;
  last_print_ = now;
  const double rate = done / std::max(since_start, 1e-9);
  const double eta = rate > 0 ? (total_ - done) / rate : 0;
  std::fprintf(stderr, "%s%s: %lld/%lld %s (%.0f%%), %.1f %s/s, ETA %.0fs%s%s%s", tty_ ? "\r\033[K" : "",
               label_.c_str(), static_cast<long long>(done), static_cast<long long>(total_), unit_.c_str(),
               total_ ? 100.0 * done / total_ : 100.0, rate, unit_.c_str(), eta, extra.empty() ? "" : ", ",
               extra.c_str(), tty_ ? "" : "\n");
  std::fflush(stderr);
  printed_ = true;
}

void Progress::finish() {
  if (printed_ && tty_) std::fprintf(stderr, "\n");
  printed_ = false;
}

}  // namespace kvscope
