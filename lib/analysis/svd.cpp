#include "analysis/svd.h"

#include <lapacke.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>

#include "core/error.h"

extern "C" void openblas_set_num_threads(int);
extern "C" int openblas_get_num_threads(void);

namespace kvscope {
namespace {

template <typename T, typename Fn>
std::vector<T> run_gesdd(std::vector<T>& a, int64_t rows, int64_t cols, Fn gesdd) {
  if (static_cast<int64_t>(a.size()) != rows * cols) fail("singular_values: matrix has ", a.size(), " elements, expected ", rows * cols);
  const int64_t k = std::min(rows, cols);
  std::vector<T> s(k);
  if (k == 0) return s;
  const lapack_int info = gesdd(LAPACK_ROW_MAJOR, 'N', static_cast<lapack_int>(rows), static_cast<lapack_int>(cols), a.data(),
                                static_cast<lapack_int>(cols), s.data(), nullptr, static_cast<lapack_int>(std::max<int64_t>(1, rows)), nullptr,
                                static_cast<lapack_int>(std::max<int64_t>(1, cols)));  // U, VT unused for jobz N, but LAPACKE checks their strides
  if (info != 0) fail("LAPACK ?gesdd failed (info ", info, "): the matrix has NaN or Inf entries, or did not converge");
  return s;
}

}  // namespace

std::vector<double> singular_values(std::vector<double>& a, int64_t rows, int64_t cols) {
  return run_gesdd<double>(a, rows, cols, LAPACKE_dgesdd);
}

std::vector<float> singular_values(std::vector<float>& a, int64_t rows, int64_t cols) {
  return run_gesdd<float>(a, rows, cols, LAPACKE_sgesdd);
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
