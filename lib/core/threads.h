#pragma once
#include <cstdint>
#include <string>

namespace kvscope {

// The cores of this machine (at least 1).
int machine_cores();
// Why a count of `n` threads is refused here, or "" when it is allowed: negative, or more
// threads than cores. Both the command-line check and configure_threads ask it.
std::string thread_count_refusal(int64_t n);

// Sets LibTorch's intra-op threads and OpenBLAS's threads together. The two pools
// oversubscribe small machines when both are large, so callers choose them as a pair.
// 0 for either picks the measured default for this machine's core count, or for the
// `cores` this process may use (0: all of them; ranks of an MPI job on one node share it).
void configure_threads(int torch_threads, int blas_threads, int cores = 0);

}  // namespace kvscope
