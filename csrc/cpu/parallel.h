// The CPU backend's one threading primitive (internal).
#pragma once

namespace arrcoc::cpu {

// Runs body(i) for i in [0, n) on `threads` OpenMP threads (static schedule), or serially when
// n is below `min_parallel` or OpenMP is unavailable.
template <typename F>
void parallel_for(int n, int threads, F&& body, int min_parallel = 16) {
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) num_threads(threads) if (n >= min_parallel)
  for (int i = 0; i < n; ++i) body(i);
#else
  (void)threads;
  (void)min_parallel;
  for (int i = 0; i < n; ++i) body(i);
#endif
}

}  // namespace arrcoc::cpu
