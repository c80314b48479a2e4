#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace kvscope {

// Progress on stderr: a rewritten line on a terminal, a line every few seconds otherwise.
// Silent for runs that finish quickly.
class Progress {
 public:
  Progress(std::string label, int64_t total, std::string unit = "tok");
  void update(int64_t done, const std::string& extra = "");
  void finish();
  double elapsed_seconds() const;

 private:
  std::string label_, unit_;
  int64_t total_;
  std::chrono::steady_clock::time_point start_, last_print_;
  bool tty_, printed_ = false;
};

}  // namespace kvscope
