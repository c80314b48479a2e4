#include "core/cores.h"

#include <algorithm>
#include <thread>

#include "core/error.h"

namespace kvscope {

int machine_cores() { return static_cast<int>(std::max(1u, std::thread::hardware_concurrency())); }

std::string thread_count_refusal(int64_t n) {
  if (n < 0) return "must be 0 (the measured default) or a positive count";
  if (n > machine_cores()) return concat("this machine has ", machine_cores(), " cores; more threads than cores only wait on each other");
  return std::string();
}

}  // namespace kvscope
