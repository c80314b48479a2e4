#pragma once

namespace kvscope {

// Sets LibTorch's intra-op threads and OpenBLAS's threads together. The two pools
// oversubscribe small machines when both are large, so callers choose them as a pair.
// 0 for either picks the measured default for this machine's core count.
void configure_threads(int torch_threads, int blas_threads);

}  // namespace kvscope
