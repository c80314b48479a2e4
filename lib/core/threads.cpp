#include "core/threads.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <thread>

#include "core/error.h"
#include "core/worker_pool.h"

extern "C" void openblas_set_num_threads(int);

namespace kvscope {

void configure_threads(int torch_threads, int blas_threads, int share) {
  const int cores = machine_cores();
  // The cores this process may use: all of them, or its share when the ranks of an MPI job
  // split a node; an explicit count is checked against the machine, then against that share.
  const int mine = share > 0 ? std::min(share, cores) : cores;
  const std::string whose = mine == cores ? concat("the ", cores, " cores") : concat("this rank's share of ", mine, " of the ", cores, " cores");
  for (const auto& [name, n] : {std::pair<const char*, int>{"--threads", torch_threads}, {"--blas-threads", blas_threads}}) {
    const std::string refusal = thread_count_refusal(n);
    if (!refusal.empty()) fail(name, " ", n, ": ", refusal);
    if (n > mine) fail(name, " ", n, " oversubscribes ", whose, " (ranks on one node split its cores); give at most ", mine);
  }
  // Both pools wide at once spin against each other (measured 3.3x slower on 2 cores).
  if (torch_threads > 1 && blas_threads > 1 && torch_threads + blas_threads > mine) {
    fail("--threads ", torch_threads, " with --blas-threads ", blas_threads, " oversubscribes ", whose,
         "; give one of them 1 (or leave both at 0 for the measured default)");
  }
  // Measured on 2 cores: one LibTorch thread with all cores given to OpenBLAS was fastest;
  // letting both pools take every core ran 2.3x slower than a single thread.
  if (torch_threads <= 0) torch_threads = mine > 4 ? mine / 2 : 1;
  if (blas_threads <= 0) blas_threads = mine > 4 ? mine / 2 : mine;
  at::set_num_threads(torch_threads);
  openblas_set_num_threads(blas_threads);
  // kvscope's own kernels (row_linear) run where OpenBLAS would, never alongside it.
  set_worker_threads(blas_threads);
}

}  // namespace kvscope
