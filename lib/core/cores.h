#pragma once
// How many threads this machine can use (LibTorch-free; core/threads.h sets the pools).
#include <cstdint>
#include <string>

namespace kvscope {

// The cores of this machine (at least 1).
int machine_cores();
// Why a count of `n` threads is refused here, or "" when it is allowed: negative, or more
// threads than cores. Both the command-line check and configure_threads ask it.
std::string thread_count_refusal(int64_t n);

}  // namespace kvscope
