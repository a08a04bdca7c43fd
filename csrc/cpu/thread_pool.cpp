// The shared worker pool behind parallel_for (see thread_pool.h).
#include "thread_pool.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ARRCOC_CPU_RELAX() _mm_pause()
#else
#define ARRCOC_CPU_RELAX() std::this_thread::yield()
#endif

namespace arrcoc::cpu {
namespace {

// How long an idle worker, or a submitter waiting for the last chunk, spins before it sleeps.
// Short: the loops of one frame follow each other within microseconds, but a spinning worker
// takes a core from the other streams' threads.
constexpr std::chrono::microseconds kSpin{500};

int available_cpus() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

// Spins until done() or kSpin has passed; true when done() came true. The clock is read once every
// 32 pauses (reading it is most of a pause loop's cost otherwise).
template <typename Done>
bool spin_until(Done&& done) {
  const auto until = std::chrono::steady_clock::now() + kSpin;
  for (int i = 1;; ++i) {
    if (done()) return true;
    if (i % 32 == 0 && std::chrono::steady_clock::now() >= until) return false;
    ARRCOC_CPU_RELAX();
  }
}

// Claims and runs chunks of job until none is left; returns how many it ran.
int work_on(RangeJob& job) {
  int ran = 0;
  for (int c = job.next.fetch_add(1, std::memory_order_relaxed); c < job.chunks;
       c = job.next.fetch_add(1, std::memory_order_relaxed)) {
    job.call(job.body, job.begin_of(c), job.begin_of(c + 1));
    ++ran;
  }
  return ran;
}

class Pool {
 public:
  explicit Pool(int workers) {
    threads_.reserve(workers);
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { worker_loop(); });
  }
  int workers() const { return static_cast<int>(threads_.size()); }

  void run(RangeJob& job) {
    if (!threads_.empty() && job.max_threads > 1) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        queue_.push_back(&job);
        pushes_.fetch_add(1, std::memory_order_release);
      }
      if (sleeping_.load(std::memory_order_acquire) > 0) work_cv_.notify_all();  // spinning ones see pushes_
    }
    const int ran = work_on(job);
    if (job.done.fetch_add(ran, std::memory_order_acq_rel) + ran == job.chunks) {
      withdraw(job);
      return;
    }
    // Chunks claimed by workers are still running: spin a little, then sleep until the last ends.
    if (!spin_until([&] { return job.done.load(std::memory_order_acquire) >= job.chunks; })) {
      std::unique_lock<std::mutex> lock(mutex_);
      done_cv_.wait(lock, [&] { return job.done.load(std::memory_order_acquire) >= job.chunks; });
    }
    withdraw(job);
  }

 private:
  // Takes job off the queue (a worker may have done so already) and waits until no worker
  // still holds a pointer to it: it lives on the submitter's stack.
  void withdraw(RangeJob& job) {
    std::unique_lock<std::mutex> lock(mutex_);
    auto it = std::find(queue_.begin(), queue_.end(), &job);
    if (it != queue_.end()) {
      queue_.erase(it);
    }
    done_cv_.wait(lock, [&] { return job.helpers.load(std::memory_order_acquire) == 0; });
  }

  // The first queued job that still has unclaimed chunks and room for one more thread; jobs
  // whose chunks are all claimed leave the queue. Called with mutex_ held.
  RangeJob* take_job() {
    for (auto it = queue_.begin(); it != queue_.end();) {
      RangeJob* j = *it;
      if (j->next.load(std::memory_order_relaxed) >= j->chunks) {
        it = queue_.erase(it);
        continue;
      }
      if (j->helpers.load(std::memory_order_relaxed) + 1 < j->max_threads) {
        j->helpers.fetch_add(1, std::memory_order_relaxed);
        return j;
      }
      ++it;
    }
    return nullptr;
  }

  void worker_loop() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      const uint64_t seen = pushes_.load(std::memory_order_relaxed);
      if (RangeJob* job = take_job()) {
        lock.unlock();
        const int ran = work_on(*job);
        job->done.fetch_add(ran, std::memory_order_acq_rel);
        lock.lock();
        // The submitter frees job once it has no helpers left (it checks under the lock).
        job->helpers.fetch_sub(1, std::memory_order_release);
        done_cv_.notify_all();
        continue;
      }
      // Nothing this worker may join (no job, or each has its threads): wait for a new job. Spin
      // a little first: the next loop of a frame is usually microseconds away.
      lock.unlock();
      spin_until([&] { return pushes_.load(std::memory_order_acquire) != seen; });
      lock.lock();
      if (pushes_.load(std::memory_order_relaxed) == seen) {
        sleeping_.fetch_add(1, std::memory_order_release);
        work_cv_.wait(lock, [&] { return pushes_.load(std::memory_order_relaxed) != seen; });
        sleeping_.fetch_sub(1, std::memory_order_relaxed);
      }
    }
  }

  std::mutex mutex_;
  std::condition_variable work_cv_;  // a job was queued
  std::condition_variable done_cv_;  // a job's last chunk ended, or a worker left a job
  std::deque<RangeJob*> queue_;
  std::atomic<uint64_t> pushes_{0};  // jobs ever queued: an idle worker waits for this to change
  std::atomic<int> sleeping_{0};     // workers waiting on work_cv_ (a push notifies only if any)
  std::vector<std::thread> threads_;
};

std::mutex g_create_mutex;
std::atomic<Pool*> g_pool{nullptr};  // created on first use; never destroyed (see shared_pool)

// A child of fork() has none of the parent's workers: it starts its own pool on first use. The
// parent's Pool object is abandoned in the child (its mutex may have been held at the fork).
void reset_after_fork() {
  new (&g_create_mutex) std::mutex();
  g_pool.store(nullptr, std::memory_order_relaxed);
}

Pool& shared_pool() {
  static const bool registered = [] {
    pthread_atfork(nullptr, nullptr, reset_after_fork);
    return true;
  }();
  (void)registered;
  if (Pool* p = g_pool.load(std::memory_order_acquire)) return *p;
  std::lock_guard<std::mutex> lock(g_create_mutex);
  // Never destroyed: workers must not be joined by a static destructor at exit while other
  // threads (the interpreter's) may still submit work.
  if (!g_pool.load(std::memory_order_relaxed)) g_pool.store(new Pool(available_cpus() - 1), std::memory_order_release);
  return *g_pool.load(std::memory_order_relaxed);
}

}  // namespace

void run_on_shared_pool(RangeJob& job) noexcept { shared_pool().run(job); }

int shared_pool_workers() {
  Pool* p = g_pool.load(std::memory_order_acquire);
  return p ? p->workers() : 0;
}

}  // namespace arrcoc::cpu
