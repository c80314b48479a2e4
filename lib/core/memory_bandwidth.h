#pragma once
// How fast this machine reads memory, so a decode speed can be put against the floor set
// by reading its weights once per token.
#include <cstdint>

namespace kvscope {

// Bytes per second for reading a `bytes`-sized buffer (much larger than the caches) once,
// split over the worker pool's threads as a decode step's weight reads are; the best of
// `repeats` passes.
double host_read_bandwidth(int64_t bytes = int64_t{256} << 20, int repeats = 10);

// Size of the CPU's largest cache as Linux reports it for cpu0 (sysfs), or -1 when unknown:
// weights that fit in it are not read from memory at every token.
int64_t last_level_cache_bytes();

}  // namespace kvscope
