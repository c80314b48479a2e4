#include "core/worker_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace kvscope {
namespace {

// One wait-loop iteration: the CPU's spin-wait hint, not a system call. sched_yield in
// these loops entered the kernel thousands of times per decode step and handed the core
// to the other pool's spinning threads (on 2 cores: about a quarter of decode time in the
// scheduler).
inline void spin_pause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

// How long an idle worker watches for the next section before it sleeps: the sections of
// one decode step follow each other within tens of microseconds; between steps and
// commands the worker blocks and costs nothing.
constexpr auto kSpinBeforeSleep = std::chrono::microseconds(100);

// parallel_pieces: each thread's share in about this many pieces, so a thread that runs
// slower (its core's memory bandwidth varies on a shared machine) takes fewer.
constexpr int64_t kPiecesPerThread = 4;

// Set while a thread runs a slice: a parallel section started inside another runs inline.
thread_local bool t_inside_section = false;

class WorkerPool {
 public:
  explicit WorkerPool(int threads) {
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { loop(i); });
  }
  ~WorkerPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
      generation_.fetch_add(1);
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
  }
  int size() const { return static_cast<int>(workers_.size()) + 1; }

  void run(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& body, bool shared) {
    const int64_t slices = std::max<int64_t>(1, std::min<int64_t>(size(), (n + grain - 1) / std::max<int64_t>(grain, 1)));
    if (slices == 1) {
      body(0, n);
      return;
    }
    body_ = &body;
    n_ = n;
    slices_ = slices;
    // Shared: pieces of about a quarter of a thread's share, taken in turn from one counter.
    chunk_ = shared ? std::max<int64_t>(std::max<int64_t>(grain, 1), n / (slices * kPiecesPerThread)) : 0;
    next_.store(0, std::memory_order_relaxed);
    // Every worker acknowledges every section, even one with no slice for it, so no worker
    // can still be reading this section's state when the next one is set up.
    pending_.store(size() - 1);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      generation_.fetch_add(1);
    }
    wake_.notify_all();
    guarded_slice(0);
    // The other slices take microseconds; spinning beats a sleep/wake round trip here.
    while (pending_.load(std::memory_order_acquire) != 0) spin_pause();
    body_ = nullptr;
    if (error_) {
      std::exception_ptr e = error_;
      error_ = nullptr;
      std::rethrow_exception(e);
    }
  }

 private:
  void run_slice(int64_t slice) {
    const int64_t begin = n_ * slice / slices_, end = n_ * (slice + 1) / slices_;
    if (chunk_ == 0 && begin >= end) return;
    t_inside_section = true;
    struct Reset {
      ~Reset() { t_inside_section = false; }
    } reset;
    if (chunk_ == 0) {
      (*body_)(begin, end);
      return;
    }
    for (int64_t piece; (piece = next_.fetch_add(chunk_, std::memory_order_relaxed)) < n_;) (*body_)(piece, std::min(n_, piece + chunk_));
  }

  // An exception in any slice (a kvscope error deep in a forward pass) reaches the caller
  // of run(), as it would without threads, instead of terminating the program.
  void guarded_slice(int64_t slice) {
    try {
      run_slice(slice);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex_);
      if (!error_) error_ = std::current_exception();
    }
  }

  void loop(int index) {
    uint64_t seen = 0;
    for (;;) {
      // Spin briefly: consecutive parallel sections of one decode step follow each other
      // within tens of microseconds, faster than a condition-variable wake-up.
      uint64_t g = generation_.load(std::memory_order_acquire);
      if (g == seen) {
        const auto until = std::chrono::steady_clock::now() + kSpinBeforeSleep;
        for (int spin = 0; g == seen; ++spin) {
          spin_pause();
          g = generation_.load(std::memory_order_acquire);
          if ((spin & 63) == 63 && std::chrono::steady_clock::now() > until) break;
        }
      }
      if (g == seen) {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_.load() != seen; });
        g = generation_.load();
      }
      seen = g;
      if (stopping_) return;
      if (index < slices_) guarded_slice(index);
      pending_.fetch_sub(1, std::memory_order_release);
    }
  }

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  bool stopping_ = false;
  std::mutex error_mutex_;
  std::exception_ptr error_;
  const std::function<void(int64_t, int64_t)>* body_ = nullptr;
  int64_t n_ = 0, slices_ = 1, chunk_ = 0;
  std::atomic<int64_t> next_{0};
};

std::unique_ptr<WorkerPool>& pool() {
  static std::unique_ptr<WorkerPool> p = std::make_unique<WorkerPool>(1);
  return p;
}

}  // namespace

void set_worker_threads(int threads) {
  threads = std::max(1, threads);
  if (pool()->size() != threads) pool() = std::make_unique<WorkerPool>(threads);
}

int worker_threads() { return pool()->size(); }

namespace {
void run_section(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& body, bool shared) {
  if (n <= 0) return;
  if (t_inside_section) {
    body(0, n);
    return;
  }
  pool()->run(n, grain, body, shared);
}
}  // namespace

void parallel_rows(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& body) {
  run_section(n, grain, body, /*shared=*/false);
}

void parallel_pieces(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& body) {
  run_section(n, grain, body, /*shared=*/true);
}

}  // namespace kvscope
