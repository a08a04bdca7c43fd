// The CPU backend's process-wide worker pool (internal).
//
// Every operator of every stream submits its parallel loops here, so N streams in one process
// share one set of workers (available CPUs - 1; the submitting thread works too) instead of each
// calling thread starting its own team: no oversubscription, and no thread started per frame.
// A loop is split into chunks that any thread may claim; the thread that submitted it claims
// chunks alongside the workers and returns when all of them are done, so a loop submitted from
// inside another one (or while every worker is busy with other streams) still completes.
#pragma once

#include <atomic>
#include <cstdint>

namespace arrcoc::cpu {

struct RangeJob {
  void (*call)(void* body, int begin, int end) = nullptr;  // runs body(i) for i in [begin, end)
  void* body = nullptr;
  int n = 0;             // iterations
  int chunks = 0;        // claimable pieces: chunk c is [n*c/chunks, n*(c+1)/chunks)
  int max_threads = 1;   // threads working on this job at once, the submitter included
  std::atomic<int> next{0};     // next unclaimed chunk
  std::atomic<int> done{0};     // chunks finished
  std::atomic<int> helpers{0};  // workers that joined
  int begin_of(int c) const { return static_cast<int>(static_cast<int64_t>(n) * c / chunks); }
};

// Runs every chunk of job and returns when all are done. A body that throws terminates the
// process (as under OpenMP): unwinding would free the job while workers still run its chunks.
void run_on_shared_pool(RangeJob& job) noexcept;

// Worker threads the shared pool has started so far (0 until the first parallel loop).
int shared_pool_workers();

}  // namespace arrcoc::cpu
