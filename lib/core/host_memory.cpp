#include "core/host_memory.h"

#include <algorithm>
#include <fstream>
#include <string>

namespace kvscope {
namespace {

// The number after `key` in a whitespace-separated file, or its first word when `key` is
// empty (cgroup files hold one value); -1 when absent or not a number.
int64_t read_first_number(const std::string& path, const std::string& key) {
  std::ifstream in(path);
  std::string word;
  while (in >> word) {
    if (key.empty() || word == key) {
      std::string value = key.empty() ? word : "";
      if (!key.empty()) in >> value;
      try {
        return std::stoll(value);
      } catch (...) {
        return -1;  // "max" in a cgroup file: no limit
      }
    }
  }
  return -1;
}

}  // namespace

int64_t available_host_bytes() {
  int64_t avail = read_first_number("/proc/meminfo", "MemAvailable:");
  if (avail > 0) avail *= 1024;
  const int64_t limit = read_first_number("/sys/fs/cgroup/memory.max", "");
  const int64_t used = read_first_number("/sys/fs/cgroup/memory.current", "");
  if (limit > 0 && used >= 0) avail = avail > 0 ? std::min(avail, limit - used) : limit - used;
  return avail;
}

}  // namespace kvscope
