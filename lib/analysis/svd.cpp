#include "analysis/svd.h"

#include <cblas.h>
#include <lapacke.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <limits>
#include <mutex>
#include <thread>

#include "core/error.h"

extern "C" void openblas_set_num_threads(int);
extern "C" int openblas_get_num_threads(void);

namespace kvscope {
namespace {

// The float and double LAPACK routines behind one name each.
lapack_int geqrt(lapack_int m, lapack_int n, lapack_int nb, double* a, double* t, double* work) {
  return LAPACKE_dgeqrt_work(LAPACK_COL_MAJOR, m, n, nb, a, m, t, nb, work);
}
lapack_int geqrt(lapack_int m, lapack_int n, lapack_int nb, float* a, float* t, float* work) {
  return LAPACKE_sgeqrt_work(LAPACK_COL_MAJOR, m, n, nb, a, m, t, nb, work);
}
lapack_int gesdd_values(lapack_int m, lapack_int n, double* a, lapack_int lda, double* s, double* work, lapack_int lwork, lapack_int* iwork) {
  return LAPACKE_dgesdd_work(LAPACK_COL_MAJOR, 'N', m, n, a, lda, s, nullptr, 1, nullptr, 1, work, lwork, iwork);
}
lapack_int gesdd_values(lapack_int m, lapack_int n, float* a, lapack_int lda, float* s, float* work, lapack_int lwork, lapack_int* iwork) {
  return LAPACKE_sgesdd_work(LAPACK_COL_MAJOR, 'N', m, n, a, lda, s, nullptr, 1, nullptr, 1, work, lwork, iwork);
}

// Column-major [m, n] with m >= n: the stored matrix, or its transpose (same singular values).
template <typename T>
struct TallView {
  T* data;
  int64_t m, n;
};

// A row-major [rows, cols] buffer is the column-major [cols, rows] transpose, so only a
// matrix whose stored form is wide needs an explicit transposition into `scratch`.
template <typename T>
TallView<T> tall_column_major(T* a, int64_t rows, int64_t cols, MatrixLayout layout, std::vector<T>& scratch) {
  const int64_t m = layout == MatrixLayout::ColumnMajor ? rows : cols;  // the stored column-major shape
  const int64_t n = layout == MatrixLayout::ColumnMajor ? cols : rows;
  if (m >= n) return {a, m, n};
  scratch.resize(static_cast<size_t>(m * n));
  constexpr int64_t kTile = 32;  // transposes in tiles that stay in L1
  for (int64_t j0 = 0; j0 < n; j0 += kTile)
    for (int64_t i0 = 0; i0 < m; i0 += kTile)
      for (int64_t j = j0; j < std::min(n, j0 + kTile); ++j)
        for (int64_t i = i0; i < std::min(m, i0 + kTile); ++i) scratch[static_cast<size_t>(i * n + j)] = a[j * m + i];
  return {scratch.data(), n, m};
}

template <typename T>
void check_finite(const std::vector<T>& s) {
  for (const T x : s)
    if (!std::isfinite(x)) fail("the matrix has NaN or Inf entries (its singular values are not finite)");
}

template <typename T>
std::vector<T> exact_values(std::vector<T>& a, int64_t rows, int64_t cols, MatrixLayout layout) {
  if (static_cast<int64_t>(a.size()) != rows * cols) fail("singular_values: matrix has ", a.size(), " elements, expected ", rows * cols);
  if (rows * cols > std::numeric_limits<lapack_int>::max()) fail("singular_values: ", rows, " x ", cols, " is beyond LAPACK's 32-bit indices");
  std::vector<T> transposed;
  const TallView<T> v = tall_column_major(a.data(), rows, cols, layout, transposed);
  const auto m = static_cast<lapack_int>(v.m), n = static_cast<lapack_int>(v.n);
  std::vector<T> s(static_cast<size_t>(n));
  if (n == 0) return s;
  // For a tall matrix, QR first leaves an n x n factor with the same singular values. The
  // recursive ?geqrt keeps the panel in level-3 BLAS, where ?gesdd's own ?geqrf factors
  // its panels with level-2 updates: 1.8x faster at 4096 x 128 (docs/methods.md §6).
  T* small = v.data;
  lapack_int lda = m;
  std::vector<T> r;
  if (m >= 2 * n) {
    // Every reflection spreads a column's NaN or Inf into R, except the last column's: its
    // own norm is all R keeps of it, and an optimised nrm2 may step over a NaN. That column
    // alone is scanned.
    const T* last = v.data + static_cast<size_t>(n - 1) * m;
    for (lapack_int i = 0; i < m; ++i)
      if (!std::isfinite(last[i])) fail("the matrix has NaN or Inf entries");
    const lapack_int nb = std::min<lapack_int>(64, n);
    std::vector<T> t(static_cast<size_t>(nb) * n), work(static_cast<size_t>(nb) * n);
    const lapack_int info = geqrt(m, n, nb, v.data, t.data(), work.data());
    if (info != 0) fail("LAPACK ?geqrt failed (info ", info, ")");
    r.assign(static_cast<size_t>(n) * n, T(0));
    for (lapack_int j = 0; j < n; ++j)
      for (lapack_int i = 0; i <= j; ++i) r[static_cast<size_t>(j) * n + i] = v.data[static_cast<size_t>(j) * m + i];
    small = r.data();
    lda = n;
  }
  const lapack_int rows_small = small == v.data ? m : n;
  // ?gesdd iterates; fed NaN or Inf it may not return. The QR above is a fixed sequence of
  // reflections that carries any other non-finite entry into R, so scanning what ?gesdd will
  // read (R, n x n, or a matrix under 2n rows) costs little next to the decomposition.
  for (lapack_int j = 0; j < n; ++j)
    for (lapack_int i = 0; i < rows_small; ++i)
      if (!std::isfinite(small[static_cast<size_t>(j) * lda + i])) fail("the matrix has NaN or Inf entries");
  std::vector<lapack_int> iwork(8 * static_cast<size_t>(n));
  T query = 0;
  lapack_int info = gesdd_values(rows_small, n, small, lda, s.data(), &query, -1, iwork.data());
  if (info == 0) {
    std::vector<T> work(static_cast<size_t>(query) + 1);
    info = gesdd_values(rows_small, n, small, lda, s.data(), work.data(), static_cast<lapack_int>(work.size()), iwork.data());
  }
  if (info < 0) fail("LAPACK ?gesdd rejected argument ", -info);
  if (info > 0) fail("LAPACK ?gesdd did not converge (info ", info, "); the matrix may have NaN or Inf entries");
  check_finite(s);
  return s;
}

}  // namespace

std::vector<double> singular_values(std::vector<double>& a, int64_t rows, int64_t cols, MatrixLayout layout) {
  return exact_values(a, rows, cols, layout);
}

std::vector<float> singular_values(std::vector<float>& a, int64_t rows, int64_t cols, MatrixLayout layout) {
  return exact_values(a, rows, cols, layout);
}

std::optional<GramSingularValues> gram_singular_values(const std::vector<double>& a, int64_t rows, int64_t cols, MatrixLayout layout,
                                                       double relative_tolerance) {
  if (static_cast<int64_t>(a.size()) != rows * cols) fail("gram_singular_values: matrix has ", a.size(), " elements, expected ", rows * cols);
  if (!(relative_tolerance > 0)) fail("gram_singular_values: the tolerance must be positive");
  // Column-major [m, n] as stored; the Gram matrix is of the smaller side, k.
  const int64_t m = layout == MatrixLayout::ColumnMajor ? rows : cols;
  const int64_t n = layout == MatrixLayout::ColumnMajor ? cols : rows;
  const int64_t k = std::min(m, n), inner = std::max(m, n);
  GramSingularValues out{std::vector<double>(static_cast<size_t>(k), 0.0), 0.0};
  if (k == 0) return out;
  std::vector<double> g(static_cast<size_t>(k * k));
  // m >= n: G = A^T A (n x n); otherwise G = A A^T (m x m). Upper triangle only.
  cblas_dsyrk(CblasColMajor, CblasUpper, m >= n ? CblasTrans : CblasNoTrans, static_cast<int>(k), static_cast<int>(inner), 1.0, a.data(),
              static_cast<int>(m), 0.0, g.data(), static_cast<int>(k));
  double frobenius_sq = 0;  // trace(G) = ||A||_F^2
  for (int64_t i = 0; i < k; ++i) frobenius_sq += g[static_cast<size_t>(i * k + i)];
  if (!std::isfinite(frobenius_sq)) fail("the matrix has NaN or Inf entries (its Gram matrix is not finite)");
  std::vector<double> eig(static_cast<size_t>(k));
  double work_query = 0;
  lapack_int iwork_query = 0;
  lapack_int info = LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, 'N', 'U', static_cast<lapack_int>(k), g.data(), static_cast<lapack_int>(k), eig.data(),
                                        &work_query, -1, &iwork_query, -1);
  if (info == 0) {
    std::vector<double> work(static_cast<size_t>(work_query) + 1);
    std::vector<lapack_int> iwork(static_cast<size_t>(std::max<lapack_int>(1, iwork_query)));
    info = LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, 'N', 'U', static_cast<lapack_int>(k), g.data(), static_cast<lapack_int>(k), eig.data(),
                               work.data(), static_cast<lapack_int>(work.size()), iwork.data(), static_cast<lapack_int>(iwork.size()));
  }
  if (info != 0) fail("LAPACK dsyevd failed (info ", info, ")");
  for (int64_t i = 0; i < k; ++i) out.sigma[static_cast<size_t>(i)] = std::sqrt(std::max(0.0, eig[static_cast<size_t>(k - 1 - i)]));
  if (frobenius_sq == 0) return out;  // the zero matrix: exact
  // methods §6, Eq. 10: |sigma_hat^2 - sigma^2| <= delta = 2 (inner + k) u ||A||_F^2, hence
  // |sigma_hat - sigma| <= min(sqrt(delta), delta / sigma_hat); worst at the smallest sigma_hat.
  const double u = std::numeric_limits<double>::epsilon() / 2;
  const double delta = 2.0 * static_cast<double>(inner + k) * u * frobenius_sq;
  const double smallest = out.sigma.back();
  if (smallest == 0) return std::nullopt;
  out.worst_relative_bound = std::min(std::sqrt(delta), delta / smallest) / smallest;
  if (!(out.worst_relative_bound <= relative_tolerance)) return std::nullopt;
  return out;
}

void parallel_for(int64_t count, const std::function<void(int64_t)>& job, int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  threads = static_cast<int>(std::min<int64_t>(threads, std::max<int64_t>(1, count)));
  const int saved = openblas_get_num_threads();
  openblas_set_num_threads(1);
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto worker = [&] {
    for (int64_t i; (i = next.fetch_add(1)) < count;) {
      try {
        job(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
        next = count;
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  openblas_set_num_threads(saved);
  if (error) std::rethrow_exception(error);
}

}  // namespace kvscope
