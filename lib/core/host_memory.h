#pragma once
#include <cstdint>

namespace kvscope {

// Bytes this process may still allocate on the host: MemAvailable, lowered to the cgroup's
// remaining allowance when the process is limited; -1 when neither can be read.
int64_t available_host_bytes();

}  // namespace kvscope
