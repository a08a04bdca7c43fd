// The CPU backend's one threading primitive (internal).
#pragma once

#include <algorithm>
#include <type_traits>

#include "thread_pool.h"

namespace arrcoc::cpu {

// Chunks per thread a loop is cut into: the shared pool balances them between threads (and
// streams); each chunk is contiguous, so a thread still walks rows in order.
constexpr int kChunksPerThread = 4;

// Runs body(i) for i in [0, n) with at most `threads` threads of the shared pool (the calling
// thread among them), or serially when n is below `min_parallel` or threads is 1. body must not
// depend on which thread runs i, nor on the order (every use writes what index i owns).
template <typename F>
void parallel_for(int n, int threads, F&& body, int min_parallel = 16) {
  if (n <= 0) return;
  if (threads <= 1 || n < min_parallel || n < 2) {
    for (int i = 0; i < n; ++i) body(i);
    return;
  }
  using Body = std::remove_reference_t<F>;
  RangeJob job;
  job.call = [](void* b, int begin, int end) {
    Body& f = *static_cast<Body*>(b);
    for (int i = begin; i < end; ++i) f(i);
  };
  job.body = const_cast<void*>(static_cast<const void*>(&body));
  job.n = n;
  threads = std::min(threads, n);  // also keeps threads * kChunksPerThread far from overflow
  job.chunks = std::min(n, threads * kChunksPerThread);
  job.max_threads = threads;
  run_on_shared_pool(job);
}

}  // namespace arrcoc::cpu
