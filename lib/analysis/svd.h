#pragma once
// Singular values through LAPACK's divide-and-conquer driver (?gesdd) on OpenBLAS.
#include <cstdint>
#include <functional>
#include <vector>

namespace kvscope {

// Singular values (descending) of a row-major rows x cols matrix; `a` is overwritten.
std::vector<double> singular_values(std::vector<double>& a, int64_t rows, int64_t cols);
std::vector<float> singular_values(std::vector<float>& a, int64_t rows, int64_t cols);

// Runs `count` independent jobs on all cores, each with single-threaded OpenBLAS: many
// small SVDs scale better across matrices than inside one. Restores OpenBLAS's threads.
void parallel_for(int64_t count, const std::function<void(int64_t)>& job, int threads = 0);

}  // namespace kvscope
