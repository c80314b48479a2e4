#pragma once
#include "core/cores.h"

namespace kvscope {

// Sets LibTorch's intra-op threads and OpenBLAS's threads together. The two pools
// oversubscribe small machines when both are large, so callers choose them as a pair.
// 0 for either picks the measured default for this machine's core count, or for the
// `cores` this process may use (0: all of them; ranks of an MPI job on one node share it).
void configure_threads(int torch_threads, int blas_threads, int cores = 0);

}  // namespace kvscope
