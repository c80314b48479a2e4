#pragma once
// Singular values (methods §6): QR of the tall matrix (LAPACK's recursive ?geqrt), then
// divide and conquer (?gesdd) on the small triangular factor; or, opt in, the eigenvalues of
// the Gram matrix, kept only where their error bound holds.
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

namespace kvscope {

enum class MatrixLayout { RowMajor, ColumnMajor };

// Singular values (descending) of a rows x cols matrix; `a` is overwritten. Non-finite
// entries are an error (found in the small factor after QR, not by a scan of the input).
std::vector<double> singular_values(std::vector<double>& a, int64_t rows, int64_t cols, MatrixLayout layout = MatrixLayout::RowMajor);
std::vector<float> singular_values(std::vector<float>& a, int64_t rows, int64_t cols, MatrixLayout layout = MatrixLayout::RowMajor);

struct GramSingularValues {
  std::vector<double> sigma;     // descending
  double worst_relative_bound;   // the bound of methods §6 on |sigma_hat - sigma| / sigma_hat, worst over all i
};

// sqrt(eigenvalues of A^T A) (or A A^T, the smaller), with its guaranteed error bound; nullopt
// when that bound exceeds `relative_tolerance` for some singular value (an ill-conditioned
// matrix: use singular_values instead). `a` is left unchanged.
std::optional<GramSingularValues> gram_singular_values(const std::vector<double>& a, int64_t rows, int64_t cols, MatrixLayout layout,
                                                       double relative_tolerance);

// Runs `count` independent jobs on all cores, each with single-threaded OpenBLAS: many
// small SVDs scale better across matrices than inside one. Restores OpenBLAS's threads.
void parallel_for(int64_t count, const std::function<void(int64_t)>& job, int threads = 0);

}  // namespace kvscope
