#include "core/memory_bandwidth.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/worker_pool.h"

namespace kvscope {

double host_read_bandwidth(int64_t bytes, int repeats) {
  const int64_t words = std::max<int64_t>(bytes / 8, 1);
  std::vector<uint64_t> buffer(static_cast<size_t>(words));
  // Written in the same slices that are read, so each thread's pages are its own (first touch).
  parallel_rows(words, 1 << 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) buffer[static_cast<size_t>(i)] = static_cast<uint64_t>(i);
  });
  std::atomic<uint64_t> sink{0};
  double best = 1e30;
  for (int r = 0; r < std::max(1, repeats); ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    // Integer sums: the compiler may reorder them into vector adds, so the loop is bound by
    // the memory, not by an addition chain.
    parallel_rows(words, 1 << 16, [&](int64_t begin, int64_t end) {
      uint64_t sum = 0;
      for (int64_t i = begin; i < end; ++i) sum += buffer[static_cast<size_t>(i)];
      sink.fetch_add(sum, std::memory_order_relaxed);
    });
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return sink.load() == 1 ? 0.0 : static_cast<double>(words * 8) / best;  // the sum is never 1: keeps the reads
}

int64_t last_level_cache_bytes() {
  // sysconf(_SC_LEVEL3_CACHE_SIZE) reported 320 MB on a virtual machine whose L3 is 32 MB;
  // sysfs gave the right figure there.
  int best_level = 0;
  int64_t bytes = -1;
  const std::filesystem::path root = "/sys/devices/system/cpu/cpu0/cache";
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(root, ec)) {
    std::ifstream level_file(entry.path() / "level"), size_file(entry.path() / "size");
    int level = 0;
    std::string size;
    if (!(level_file >> level) || !(size_file >> size) || size.empty()) continue;
    char* unit = nullptr;
    int64_t value = std::strtoll(size.c_str(), &unit, 10);  // "32768K", "1024K", "8M"
    if (value <= 0 || value > (int64_t{1} << 30)) continue;
    if (*unit == 'K') value <<= 10;
    else if (*unit == 'M') value <<= 20;
    if (level > best_level) {
      best_level = level;
      bytes = value;
    }
  }
  return bytes;
}

}  // namespace kvscope
