#pragma once
// A fixed pool of threads that splits a range of rows into one static slice per thread.
// Static slicing keeps every result independent of timing, and the pool is persistent
// because a decode step issues dozens of short parallel sections (thread start-up would
// cost more than the work).
#include <cstdint>
#include <functional>

namespace kvscope {

// Runs body(begin, end) over [0, n) split into contiguous slices, one per pool thread (the
// caller runs the first). Slices are no smaller than `grain`. A section started inside
// another runs inline on its thread. Call from one thread at a time (kvscope's forward pass
// is single-threaded above this); an exception from any slice is rethrown here.
void parallel_rows(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& body);

// The same, for a body whose results do not depend on how [0, n) is split (each element
// computed alone): pieces of at least `grain` are handed out in turn, so a thread that
// finishes early takes more instead of waiting for the slowest.
void parallel_pieces(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& body);

// Resizes the pool (1: everything runs on the caller). Set by configure_threads.
void set_worker_threads(int threads);
int worker_threads();

}  // namespace kvscope
