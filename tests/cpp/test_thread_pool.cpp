// The CPU backend's shared worker pool (csrc/cpu/thread_pool.h, parallel.h): every index runs
// exactly once, loops from many threads at once and loops inside loops complete, a loop never
// has more threads than it asked for, the pool's size does not grow with the callers, and a
// forked child gets a working pool of its own.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "../../csrc/cpu/parallel.h"
#include "check.h"

using arrcoc::cpu::parallel_for;
using arrcoc_test::check;

namespace {

// Each index of [0, n) visited exactly once.
bool runs_each_index_once(int n, int threads, int min_parallel) {
  std::vector<std::atomic<int>> hits(static_cast<size_t>(std::max(n, 1)));
  for (auto& h : hits) h.store(0);
  parallel_for(n, threads, [&](int i) { hits[i].fetch_add(1); }, min_parallel);
  for (int i = 0; i < n; ++i)
    if (hits[i].load() != 1) return false;
  return true;
}

void test_every_index_once() {
  for (int n : {0, 1, 2, 15, 16, 17, 100, 1031})
    for (int threads : {1, 2, 3, 8, 64})
      for (int min_parallel : {2, 16})
        check(runs_each_index_once(n, threads, min_parallel),
              "each index once: n=" + std::to_string(n) + " threads=" + std::to_string(threads) +
                  " min_parallel=" + std::to_string(min_parallel));
}

void test_many_callers_at_once() {
  // 8 callers (more than this machine's cores), 300 loops each, checked sums.
  std::atomic<int> wrong{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 8; ++t)
    callers.emplace_back([&, t] {
      for (int rep = 0; rep < 300; ++rep) {
        const int n = 50 + (rep * 7 + t) % 400;
        std::vector<int64_t> out(n, -1);
        parallel_for(n, 2 + t % 3, [&](int i) { out[i] = int64_t{i} * i + t; }, 2);
        for (int i = 0; i < n; ++i)
          if (out[i] != int64_t{i} * i + t) wrong.fetch_add(1);
      }
    });
  for (auto& c : callers) c.join();
  check(wrong.load() == 0, "8 concurrent callers: every loop complete and correct (" + std::to_string(wrong.load()) +
                               " wrong)");
  const int cpus = static_cast<int>(std::thread::hardware_concurrency());
  check(arrcoc::cpu::shared_pool_workers() >= 0 && arrcoc::cpu::shared_pool_workers() <= std::max(cpus, 1),
        "the pool has at most one worker per CPU however many callers (" +
            std::to_string(arrcoc::cpu::shared_pool_workers()) + ")");
}

void test_nested_loops() {
  std::vector<std::atomic<int>> hits(64 * 64);
  for (auto& h : hits) h.store(0);
  parallel_for(64, 4, [&](int i) { parallel_for(64, 4, [&](int j) { hits[i * 64 + j].fetch_add(1); }, 2); }, 2);
  bool ok = true;
  for (auto& h : hits) ok = ok && h.load() == 1;
  check(ok, "a loop inside a loop completes, each index once");
}

void test_threads_limit() {
  // Bodies that overlap in time: the most running at once never exceeds what the loop asked for.
  for (int threads : {1, 2}) {
    std::atomic<int> running{0}, most{0};
    parallel_for(64, threads, [&](int) {
      const int now = running.fetch_add(1) + 1;
      int m = most.load();
      while (now > m && !most.compare_exchange_weak(m, now)) {
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      running.fetch_sub(1);
    }, 2);
    check(most.load() <= threads, "threads=" + std::to_string(threads) + ": at most that many at once (saw " +
                                      std::to_string(most.load()) + ")");
  }
}

void test_fork_child_has_a_pool() {
  parallel_for(100, 4, [](int) {}, 2);  // the parent's workers exist
  const pid_t pid = fork();
  if (pid == 0) {
    alarm(20);  // a hang in the child fails the test instead of blocking it
    int64_t sum = 0;
    std::vector<int64_t> v(1000);
    parallel_for(1000, 4, [&](int i) { v[i] = i; }, 2);
    for (int64_t x : v) sum += x;
    _exit(sum == 999 * 1000 / 2 ? 0 : 3);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "after fork() the child's parallel loops complete");
}

}  // namespace

int main() {
  test_every_index_once();
  test_many_callers_at_once();
  test_nested_loops();
  test_threads_limit();
  test_fork_child_has_a_pool();
  return arrcoc_test::finish();
}
