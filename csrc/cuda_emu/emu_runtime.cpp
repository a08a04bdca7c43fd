// The emulated CUDA runtime: devices, device memory, streams, events, copies and kernel
// launches, run on the CPU with the semantics that find the bugs a GPU would show.
//
// - Device memory: each cudaMalloc is its own page range inside a per-device reservation, filled
//   with 0xFF bytes (NaN for float16/32/64, -1 for integers) and mapped PROT_NONE except while
//   an emulated kernel or copy of that device runs. A host dereference faults; a kernel touching
//   another device's (or freed, or out-of-bounds) memory faults too. The SIGSEGV handler says
//   which, then hands the signal on (a crash, as on a GPU, not a silent pass).
// - Streams run lazily: queued work executes only at a synchronization point (event/stream/
//   device synchronize, blocking copies, cudaFree), honouring cudaStreamWaitEvent and the legacy
//   default stream's implicit ordering with blocking streams. A host read that forgot to wait
//   sees the poison or the previous frame.
// - Counters (cuda_emu_counters.h): allocations, frees, host synchronizations, device bytes.
// - Stream capture: while a stream captures, what is queued on it goes into a graph instead of
//   running; a graph launch queues the captured work as one step. Calls CUDA refuses during a
//   capture (synchronous copies and waits, pageable host memory, cudaMalloc on the capturing
//   thread) fail and invalidate it, as on a GPU.
// - Launches check a real GPU's limits and run blocks in a scrambled order on worker threads,
//   each block's threads as fibers in a scrambled order that is reshuffled at every barrier.
#include <cuda_runtime.h>
#include <cuda_emu_counters.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "fiber.h"

// Opaque handle types of the runtime API.
struct CUstream_st;
struct CUevent_st;

namespace cuda_emu {

thread_local const ThreadCoords* tls_coords = nullptr;

namespace {

// ------------------------------------------------------------------ configuration
constexpr int kMaxDevices = 8;
constexpr size_t kRegionBytes = 64ull << 30;      // address space reserved per device
constexpr size_t kDeviceMemory = 16ull << 30;     // what each emulated device "has"
constexpr size_t kAllocAlign = 256;               // cudaMalloc's alignment guarantee
constexpr size_t kMaxRecords = 1u << 20;          // allocations per device over a process's life
constexpr size_t kSharedDefault = 48 * 1024;      // static + dynamic shared memory without opt-in
constexpr size_t kSharedOptinMax = 227 * 1024;    // Hopper's opt-in maximum
constexpr size_t kParamLimit = 4096;              // portable kernel parameter limit
constexpr size_t kFiberStack = 128 * 1024;

int env_int(const char* name, int fallback, int lo, int hi) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (*end || x < lo || x > hi) {
    std::fprintf(stderr, "arrcoc CUDA emulator: %s=%s is out of range %d..%d; using %d\n", name, v, lo, hi, fallback);
    return fallback;
  }
  return static_cast<int>(x);
}

size_t page_size() {
  static const size_t p = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return p;
}

[[noreturn]] void fatal(const std::string& what) {
  std::fprintf(stderr, "arrcoc CUDA emulator: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

// ------------------------------------------------------------------ device memory
struct AllocRecord {
  uintptr_t begin, end;          // the bytes the caller asked for
  uintptr_t map_begin, map_end;  // the pages that hold them
  std::atomic<bool> live;
};

struct DeviceState {
  int ordinal = 0;
  uintptr_t base = 0, bump = 0;
  size_t in_use = 0;
  AllocRecord* records = nullptr;  // append-only, sorted by begin (bump allocation)
  std::atomic<size_t> num_records{0};
  std::vector<AllocRecord*> live;
  CUstream_st* legacy = nullptr;
};

// What host code costs the device (cuda_emu_counters.h); atomics: read without the emulator's lock.
struct Counters {
  enum Id {
    kMalloc, kFree, kMallocHost, kFreeHost, kHostSyncs, kDeviceSyncs, kStreamSyncs, kEventSyncs, kBlockingCopies,
    kBlockingMemsets, kImplicitSyncs, kQueries, kLaunches, kAsyncCopies, kCaptures, kGraphLaunches, kAtomics,
    kDeviceBytes, kPeakDeviceBytes, kCount
  };
  static constexpr const char* kNames[kCount] = {
      "malloc_calls", "free_calls", "malloc_host_calls", "free_host_calls", "host_syncs", "device_syncs",
      "stream_syncs", "event_syncs", "blocking_copies", "blocking_memsets", "implicit_syncs", "queries", "launches",
      "async_copies", "captures", "graph_launches", "atomics", "device_bytes", "peak_device_bytes"};
  std::atomic<unsigned long long> v[kCount] = {};

  void add(Id id) { v[id].fetch_add(1, std::memory_order_relaxed); }
  // One of the calls that block the host until device work is done.
  void host_sync(Id kind) {
    add(kind);
    add(kHostSyncs);
  }
  void allocated(size_t bytes) {
    const unsigned long long now = v[kDeviceBytes].fetch_add(bytes) + bytes;
    unsigned long long peak = v[kPeakDeviceBytes].load();
    while (now > peak && !v[kPeakDeviceBytes].compare_exchange_weak(peak, now)) {
    }
  }
  void freed(size_t bytes) { v[kDeviceBytes].fetch_sub(bytes); }
  void reset() {
    for (int i = 0; i < kCount; ++i)
      if (i != kDeviceBytes) v[i].store(0);
    v[kPeakDeviceBytes].store(v[kDeviceBytes].load());
  }
};
Counters g_counters;

// What the calling OS thread is doing for the emulated device (for fault reports).
thread_local const char* tls_activity = nullptr;
thread_local int tls_activity_device = -1;

}  // namespace

void count_atomic() noexcept { g_counters.add(Counters::kAtomics); }
}  // namespace cuda_emu

// ------------------------------------------------------------------ streams and events
// A captured sequence of stream work (its steps run in order, as captured from one stream).
struct CUgraph_st {
  int device = 0;
  std::vector<std::function<void()>> steps;
};
struct CUgraphExec_st : CUgraph_st {};  // an independent copy of its graph

struct CUstream_st {
  struct Op {
    std::function<void()> run;
    std::vector<std::pair<CUstream_st*, uint64_t>> deps;  // (stream, position) that must complete first
  };
  int device = 0;
  bool blocking = true;  // synchronizes with the legacy default stream
  bool legacy = false;
  bool destroyed = false;
  std::deque<Op> pending;
  uint64_t enqueued = 0, completed = 0;
  // Capturing: work goes into `capture` instead of `pending` (null when not capturing).
  CUgraph_st* capture = nullptr;
  bool capture_invalidated = false;
  cudaStreamCaptureMode capture_mode = cudaStreamCaptureModeGlobal;
  std::thread::id capture_thread;
};

struct CUevent_st {
  int device = 0;
  CUstream_st* stream = nullptr;  // null until recorded
  uint64_t position = 0;
  bool destroyed = false;
};

namespace cuda_emu {
namespace {

class WorkerPool;

class Emulator {
 public:
  static Emulator& get() {
    static Emulator* e = new Emulator();  // never destroyed: handles may outlive static destructors
    return *e;
  }

  std::recursive_mutex mu;
  int num_devices = 0;
  int num_workers = 1;
  uint64_t seed = 1;
  uint64_t launches = 0;
  uintptr_t reserve_begin = 0, reserve_end = 0;
  DeviceState devices[kMaxDevices];
  std::unordered_set<CUstream_st*> streams;
  std::unordered_set<CUevent_st*> events;
  std::map<uintptr_t, size_t> pinned;  // cudaMallocHost ranges: begin -> bytes
  std::unordered_map<const void*, int> max_dynamic_shared;
  int granted = -1;  // device whose memory is readable right now (-1: none)
  WorkerPool* pool = nullptr;  // created at the first launch; a forked child makes its own
  int flush_depth = 0;

  // ---------------------------------------------------------------- memory helpers
  int device_of(uintptr_t a) const {
    if (a < reserve_begin || a >= reserve_end) return -1;
    return static_cast<int>((a - reserve_begin) / kRegionBytes);
  }
  // The live allocation holding [a, a + n), or null.
  AllocRecord* find_live(uintptr_t a, size_t n) {
    const int d = device_of(a);
    if (d < 0) return nullptr;
    for (AllocRecord* r : devices[d].live)
      if (a >= r->begin && a + n <= r->end && a + n >= a) return r;
    return nullptr;
  }
  bool is_pinned(uintptr_t a, size_t n) const {
    auto it = pinned.upper_bound(a);
    if (it == pinned.begin()) return false;
    --it;
    return a >= it->first && a + n <= it->first + it->second;
  }

  void protect(AllocRecord* r, int prot) {
    if (mprotect(reinterpret_cast<void*>(r->map_begin), r->map_end - r->map_begin, prot) != 0)
      fatal("mprotect failed");
  }
  void grant(int d) {
    if (granted == d) return;
    revoke();
    for (AllocRecord* r : devices[d].live) protect(r, PROT_READ | PROT_WRITE);
    granted = d;
  }
  void revoke() {
    if (granted < 0) return;
    for (AllocRecord* r : devices[granted].live) protect(r, PROT_NONE);
    granted = -1;
  }

  // ---------------------------------------------------------------- streams
  CUstream_st* new_stream(int device, bool blocking, bool legacy) {
    auto* s = new CUstream_st();
    s->device = device;
    s->blocking = blocking;
    s->legacy = legacy;
    streams.insert(s);
    return s;
  }

  // Handle -> stream; null for an unknown or destroyed handle.
  CUstream_st* resolve(cudaStream_t h, int current) {
    if (h == nullptr || h == cudaStreamLegacy) return devices[current].legacy;
    if (h == cudaStreamPerThread) {
      thread_local std::unordered_map<int, CUstream_st*> per_thread;
      CUstream_st*& s = per_thread[current];
      if (!s) s = new_stream(current, true, false);
      return s;
    }
    auto* s = reinterpret_cast<CUstream_st*>(h);
    return streams.count(s) && !s->destroyed ? s : nullptr;
  }

  // Queues `run` on `s` after the implicit ordering of the legacy default stream (while `s`
  // captures: appends it to the graph; nothing runs, and the returned position is unchanged).
  uint64_t enqueue(CUstream_st* s, std::function<void()> run) {
    if (s->capture) {
      s->capture->steps.push_back(std::move(run));
      return s->enqueued;
    }
    CUstream_st::Op op;
    op.run = std::move(run);
    if (s->legacy) {
      for (CUstream_st* b : streams)
        if (b != s && b->device == s->device && b->blocking && !b->destroyed && b->enqueued > b->completed)
          op.deps.emplace_back(b, b->enqueued);
    } else if (s->blocking) {
      CUstream_st* l = devices[s->device].legacy;
      if (l->enqueued > l->completed) op.deps.emplace_back(l, l->enqueued);
    }
    s->pending.push_back(std::move(op));
    return ++s->enqueued;
  }
  uint64_t enqueue_wait(CUstream_st* s, CUstream_st* on, uint64_t position) {
    uint64_t pos = enqueue(s, [] {});
    s->pending.back().deps.emplace_back(on, position);
    return pos;
  }

  // A call CUDA refuses while a capture that it would disturb is under way ("unsafe" calls: they
  // synchronize or allocate): a global-mode capture on any thread, or a thread-local one on this
  // thread. Such a call fails and invalidates those captures. Returns true when it must fail.
  bool unsafe_during_capture() {
    bool hit = false;
    for (CUstream_st* s : streams)
      if (s->capture && !s->destroyed &&
          (s->capture_mode == cudaStreamCaptureModeGlobal ||
           (s->capture_mode == cudaStreamCaptureModeThreadLocal && s->capture_thread == std::this_thread::get_id()))) {
        s->capture_invalidated = true;
        hit = true;
      }
    return hit;
  }

  // Runs `s`'s queued work up to `position` (and everything it depends on).
  void flush(CUstream_st* s, uint64_t position) {
    ++flush_depth;
    while (s->completed < position && !s->pending.empty()) {
      CUstream_st::Op op = std::move(s->pending.front());
      s->pending.pop_front();
      for (auto& [on, pos] : op.deps) flush(on, pos);
      grant(s->device);
      tls_activity_device = s->device;
      op.run();
      tls_activity = nullptr;
      tls_activity_device = -1;
      ++s->completed;
    }
    if (--flush_depth == 0) revoke();
  }
  void flush_all(CUstream_st* s) { flush(s, s->enqueued); }
  void flush_device(int d) {
    for (CUstream_st* s : std::vector<CUstream_st*>(streams.begin(), streams.end()))
      if (s->device == d) flush_all(s);
  }

  // ---------------------------------------------------------------- kernels
  void run_grid(const KernelCall& call, dim3 grid, dim3 block, uint64_t launch_seed);

 private:
  Emulator() {
    num_devices = env_int("ARRCOC_EMU_DEVICES", 2, 1, kMaxDevices);
    num_workers = env_int("ARRCOC_EMU_THREADS", std::max(1, static_cast<int>(std::thread::hardware_concurrency())),
                          1, 256);
    seed = static_cast<uint64_t>(env_int("ARRCOC_EMU_SEED", 1, 0, 1 << 30));
    const size_t total = kRegionBytes * num_devices;
    void* p = mmap(nullptr, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) fatal("cannot reserve address space for emulated device memory");
    reserve_begin = reinterpret_cast<uintptr_t>(p);
    reserve_end = reserve_begin + total;
    for (int d = 0; d < num_devices; ++d) {
      DeviceState& dev = devices[d];
      dev.ordinal = d;
      dev.base = dev.bump = reserve_begin + kRegionBytes * d;
      void* r = mmap(nullptr, sizeof(AllocRecord) * kMaxRecords, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (r == MAP_FAILED) fatal("cannot map allocation records");
      dev.records = static_cast<AllocRecord*>(r);
      dev.legacy = new_stream(d, true, true);
    }
    install_fault_handler();
    // fork() copies only the calling thread: a child must not wait on the parent's workers.
    pthread_atfork(nullptr, nullptr, [] { Emulator::get().pool = nullptr; });
  }

  static void install_fault_handler();
};

thread_local cudaError_t tls_last_error = cudaSuccess;
thread_local int tls_device = 0;

cudaError_t fail(cudaError_t e) {
  tls_last_error = e;
  return e;
}
cudaError_t fail(cudaError_t e, const std::string& why) {
  if (std::getenv("ARRCOC_EMU_QUIET") == nullptr)
    std::fprintf(stderr, "arrcoc CUDA emulator: %s (%s)\n", why.c_str(), cudaGetErrorName(e));
  return fail(e);
}

// ------------------------------------------------------------------ fault reports
struct sigaction g_previous_segv;

void write_str(const char* s) {
  ssize_t ignored = write(2, s, std::strlen(s));
  (void)ignored;
}

void on_segv(int sig, siginfo_t* info, void* uctx) {
  Emulator& e = Emulator::get();
  const auto a = reinterpret_cast<uintptr_t>(info->si_addr);
  const int d = e.device_of(a);
  if (d >= 0 && d < e.num_devices) {
    char msg[512];
    const DeviceState& dev = e.devices[d];
    // Nearest allocation at or below `a` (records are sorted by address).
    size_t lo = 0, hi = dev.num_records.load();
    while (hi - lo > 1) {
      const size_t mid = (lo + hi) / 2;
      (dev.records[mid].map_begin <= a ? lo : hi) = mid;
    }
    const AllocRecord* r = hi > 0 && dev.records[lo].map_begin <= a ? &dev.records[lo] : nullptr;
    const char* what = "an address no allocation ever held";
    char where[160] = "";
    if (r && a < r->map_end) {
      if (!r->live.load())
        what = "freed memory (use after cudaFree)";
      else if (a >= r->begin && a < r->end)
        what = tls_activity_device >= 0 && tls_activity_device != d ? "memory of another device" : "a live allocation";
      else
        what = "bytes outside an allocation (out of bounds)";
      std::snprintf(where, sizeof where, " (allocation [%#lx, %#lx) of %lu bytes)", static_cast<unsigned long>(r->begin),
                    static_cast<unsigned long>(r->end), static_cast<unsigned long>(r->end - r->begin));
    }
    if (tls_activity_device >= 0)
      std::snprintf(msg, sizeof msg,
                    "\narrcoc CUDA emulator: %s on device %d touched %s of device %d at %#lx%s\n",
                    tls_activity ? tls_activity : "device work", tls_activity_device, what, d,
                    static_cast<unsigned long>(a), where);
    else
      std::snprintf(msg, sizeof msg,
                    "\narrcoc CUDA emulator: host code dereferenced device memory (%s) of device %d at %#lx%s: "
                    "device memory is reachable only through kernels and cudaMemcpy*\n",
                    what, d, static_cast<unsigned long>(a), where);
    write_str(msg);
  }
  // Hand the fault on (Python's faulthandler prints the traceback, then the process dies).
  sigaction(SIGSEGV, &g_previous_segv, nullptr);
  (void)sig;
  (void)uctx;
}

void Emulator::install_fault_handler() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_segv;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, &g_previous_segv);
}

// ------------------------------------------------------------------ block scheduler
enum class FiberState { kReady, kAtBarrier, kDone };

struct ThreadFiber {
  FiberContext ctx;
  FiberStack stack;
  ThreadCoords coords;
  FiberState state = FiberState::kReady;
};

// Per worker OS thread: its fibers (one per CUDA thread of the current block, reused).
struct Worker {
  FiberContext scheduler;
  std::vector<std::unique_ptr<ThreadFiber>> fibers;
  ThreadFiber* current = nullptr;
  const KernelCall* call = nullptr;

  ~Worker() {
    for (auto& f : fibers) free_fiber_stack(f->stack);
  }
};
thread_local Worker* tls_worker = nullptr;

void fiber_main() {
  for (;;) {
    Worker* w = tls_worker;
    ThreadFiber* f = w->current;
    w->call->run(w->call->state);
    f->state = FiberState::kDone;
    switch_fiber(&f->ctx, &w->scheduler);
  }
}

void resume(Worker& w, ThreadFiber* f) {
  w.current = f;
  tls_coords = &f->coords;
  switch_fiber(&w.scheduler, &f->ctx);
  tls_coords = nullptr;
}

void run_block(Worker& w, const KernelCall& call, uint3 block_idx, dim3 block, dim3 grid, uint64_t block_seed) {
  const unsigned n = block.x * block.y * block.z;
  while (w.fibers.size() < n) {
    auto f = std::make_unique<ThreadFiber>();
    f->stack = allocate_fiber_stack(kFiberStack);
    make_fiber(&f->ctx, f->stack, fiber_main);
    w.fibers.push_back(std::move(f));
  }
  w.call = &call;
  std::vector<unsigned> order(n);
  for (unsigned t = 0; t < n; ++t) {
    ThreadFiber& f = *w.fibers[t];
    f.coords.thread_idx = uint3{t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
    f.coords.block_idx = block_idx;
    f.coords.block_dim = block;
    f.coords.grid_dim = grid;
    f.state = FiberState::kReady;
    order[t] = t;
  }
  std::mt19937_64 rng(block_seed);
  for (;;) {
    std::shuffle(order.begin(), order.end(), rng);  // a new order for every barrier phase
    for (unsigned t : order)
      if (w.fibers[t]->state == FiberState::kReady) resume(w, w.fibers[t].get());
    unsigned waiting = 0, done = 0;
    for (unsigned t = 0; t < n; ++t) {
      waiting += w.fibers[t]->state == FiberState::kAtBarrier;
      done += w.fibers[t]->state == FiberState::kDone;
    }
    if (waiting == 0) break;
    if (done > 0)
      fatal("__syncthreads() reached by " + std::to_string(waiting) + " of " + std::to_string(n) +
            " threads of block (" + std::to_string(block_idx.x) + "," + std::to_string(block_idx.y) + "," +
            std::to_string(block_idx.z) + "); the others had returned (a divergent barrier: undefined on a GPU)");
    for (unsigned t = 0; t < n; ++t) w.fibers[t]->state = FiberState::kReady;
  }
  w.call = nullptr;
}

// One launch's blocks, shared by the worker threads.
struct GridRun {
  const KernelCall* call = nullptr;
  dim3 grid, block;
  int device = 0;
  uint64_t seed = 0;
  std::vector<uint32_t> order;
  std::atomic<size_t> next{0};
  int unfinished = 0;
};

class WorkerPool {
 public:
  explicit WorkerPool(int n) {
    for (int i = 0; i < n; ++i) threads_.emplace_back([this] { loop(); });
  }

  void run(GridRun& g) {
    std::unique_lock<std::mutex> lock(mu_);
    g.unfinished = static_cast<int>(threads_.size());
    job_ = &g;
    ++generation_;
    cv_.notify_all();
    done_cv_.wait(lock, [&] { return g.unfinished == 0; });
    job_ = nullptr;
  }

 private:
  void loop() {
    // Fault reports must work on an overflowing fiber stack too.
    stack_t ss;
    ss.ss_size = 64 * 1024;
    ss.ss_sp = std::malloc(ss.ss_size);
    ss.ss_flags = 0;
    sigaltstack(&ss, nullptr);
    Worker worker;
    tls_worker = &worker;
    uint64_t seen = 0;
    for (;;) {
      GridRun* g;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        g = job_;
      }
      tls_activity = "a kernel";
      tls_activity_device = g->device;
      for (size_t i; (i = g->next.fetch_add(1)) < g->order.size();) {
        const uint32_t b = g->order[i];
        const uint3 idx{b % g->grid.x, (b / g->grid.x) % g->grid.y, b / (g->grid.x * g->grid.y)};
        run_block(worker, *g->call, idx, g->block, g->grid, g->seed * 0x9E3779B97F4A7C15ull + b);
      }
      tls_activity = nullptr;
      tls_activity_device = -1;
      std::lock_guard<std::mutex> lock(mu_);
      if (--g->unfinished == 0) done_cv_.notify_all();
    }
  }

  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  GridRun* job_ = nullptr;
  uint64_t generation_ = 0;
};

void Emulator::run_grid(const KernelCall& call, dim3 grid, dim3 block, uint64_t launch_seed) {
  if (!pool) pool = new WorkerPool(num_workers);  // threads live as long as the process
  GridRun g;
  g.call = &call;
  g.grid = grid;
  g.block = block;
  g.device = tls_activity_device;
  g.seed = launch_seed;
  const size_t nb = static_cast<size_t>(grid.x) * grid.y * grid.z;
  g.order.resize(nb);
  for (size_t i = 0; i < nb; ++i) g.order[i] = static_cast<uint32_t>(i);
  std::mt19937_64 rng(launch_seed);
  std::shuffle(g.order.begin(), g.order.end(), rng);
  pool->run(g);
}

// ------------------------------------------------------------------ argument checks
bool is_device_kind_ok(cudaMemcpyKind kind, bool dst_dev, bool src_dev) {
  switch (kind) {
    case cudaMemcpyHostToHost: return !dst_dev && !src_dev;
    case cudaMemcpyHostToDevice: return dst_dev && !src_dev;
    case cudaMemcpyDeviceToHost: return !dst_dev && src_dev;
    case cudaMemcpyDeviceToDevice: return dst_dev && src_dev;
    case cudaMemcpyDefault: return true;
  }
  return false;
}

// A device range must lie in one live allocation of `device`; returns an error or cudaSuccess.
cudaError_t check_device_range(Emulator& e, const void* p, size_t n, int device, const char* what) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  const int d = e.device_of(a);
  if (d != device)
    return fail(cudaErrorInvalidValue, std::string(what) + ": pointer " + std::to_string(a) + " is memory of device " +
                                           std::to_string(d) + " but the work runs on device " + std::to_string(device));
  if (!e.find_live(a, n))
    return fail(cudaErrorInvalidValue, std::string(what) + ": [ptr, ptr + " + std::to_string(n) +
                                           ") is not inside one live device allocation");
  return cudaSuccess;
}

// Copies of `rows` rows; device sides checked, host sides read at run time (pinned) or now.
cudaError_t enqueue_copy(Emulator& e, char* dst, size_t dpitch, const char* src, size_t spitch, size_t width,
                         size_t rows, cudaMemcpyKind kind, cudaStream_t stream, bool blocking_call) {
  if (rows == 0 || width == 0) return cudaSuccess;
  if (!dst || !src) return fail(cudaErrorInvalidValue, "copy: null pointer");
  if (dpitch < width || spitch < width) return fail(cudaErrorInvalidPitchValue, "copy: pitch smaller than width");
  CUstream_st* s = e.resolve(stream, tls_device);
  if (!s) return fail(cudaErrorInvalidResourceHandle, "copy: unknown or destroyed stream");
  const size_t dspan = dpitch * (rows - 1) + width, sspan = spitch * (rows - 1) + width;
  const bool dst_dev = e.device_of(reinterpret_cast<uintptr_t>(dst)) >= 0;
  const bool src_dev = e.device_of(reinterpret_cast<uintptr_t>(src)) >= 0;
  if (!is_device_kind_ok(kind, dst_dev, src_dev))
    return fail(cudaErrorInvalidMemcpyDirection, "copy: the pointers do not match the cudaMemcpyKind");
  cudaError_t err;
  if (dst_dev && (err = check_device_range(e, dst, dspan, s->device, "copy destination")) != cudaSuccess) return err;
  if (src_dev && (err = check_device_range(e, src, sspan, s->device, "copy source")) != cudaSuccess) return err;

  std::shared_ptr<std::vector<char>> snapshot;
  const bool host_src_pageable = !src_dev && !e.is_pinned(reinterpret_cast<uintptr_t>(src), sspan);
  const bool host_dst_pageable = !dst_dev && !e.is_pinned(reinterpret_cast<uintptr_t>(dst), dspan);
  if (blocking_call && e.unsafe_during_capture())
    return fail(cudaErrorStreamCaptureUnsupported, "cudaMemcpy: a synchronous copy while a stream captures");
  if (s->capture && (host_src_pageable || host_dst_pageable)) {
    // A graph would replay what the host held at capture time, or write where it may be gone.
    s->capture_invalidated = true;
    return fail(cudaErrorStreamCaptureUnsupported, "copy: pageable host memory cannot be captured in a graph "
                                                   "(use page-locked memory, cudaMallocHost)");
  }
  if (host_src_pageable && !blocking_call) {
    // Pageable host source: CUDA stages it before the call returns, so the caller may reuse it.
    snapshot = std::make_shared<std::vector<char>>(src, src + sspan);
  }
  const uint64_t pos = e.enqueue(s, [=] {
    tls_activity = "a memory copy";
    const char* from = snapshot ? snapshot->data() : src;
    for (size_t r = 0; r < rows; ++r) std::memcpy(dst + r * dpitch, from + r * spitch, width);
  });
  // Blocking copies, and copies into pageable host memory, return once complete (CUDA's rules).
  if (blocking_call || host_dst_pageable) {
    g_counters.host_sync(Counters::kBlockingCopies);
    e.flush(s, pos);
  } else {
    g_counters.add(Counters::kAsyncCopies);
  }
  return cudaSuccess;
}

cudaError_t enqueue_memset(Emulator& e, void* p, int value, size_t n, cudaStream_t stream, bool blocking_call) {
  if (n == 0) return cudaSuccess;
  CUstream_st* s = e.resolve(stream, tls_device);
  if (!s) return fail(cudaErrorInvalidResourceHandle, "cudaMemset: unknown or destroyed stream");
  cudaError_t err = check_device_range(e, p, n, s->device, "cudaMemset");
  if (err != cudaSuccess) return err;
  if (blocking_call && e.unsafe_during_capture())
    return fail(cudaErrorStreamCaptureUnsupported, "cudaMemset: a synchronous memset while a stream captures");
  const uint64_t pos = e.enqueue(s, [=] {
    tls_activity = "a memset";
    std::memset(p, value, n);
  });
  if (blocking_call) {
    g_counters.host_sync(Counters::kBlockingMemsets);
    e.flush(s, pos);
  } else {
    g_counters.add(Counters::kAsyncCopies);
  }
  return cudaSuccess;
}

}  // namespace

void syncthreads() noexcept {
  Worker* w = tls_worker;
  if (!w || !w->current) fatal("__syncthreads() called outside an emulated kernel");
  ThreadFiber* f = w->current;
  f->state = FiberState::kAtBarrier;
  switch_fiber(&f->ctx, &w->scheduler);
}

cudaError_t launch_kernel(const void* kernel, dim3 grid, dim3 block, size_t dynamic_shared, cudaStream_t stream,
                          size_t param_bytes, KernelCall call) {
  std::unique_ptr<void, void (*)(void*)> owned(call.state, call.destroy);
  Emulator& e = Emulator::get();
  std::lock_guard<std::recursive_mutex> lock(e.mu);
  const uint64_t threads = static_cast<uint64_t>(block.x) * block.y * block.z;
  if (block.x == 0 || block.y == 0 || block.z == 0 || grid.x == 0 || grid.y == 0 || grid.z == 0)
    return fail(cudaErrorInvalidConfiguration, "launch: a grid or block dimension is 0");
  if (block.x > 1024 || block.y > 1024 || block.z > 64 || threads > 1024)
    return fail(cudaErrorInvalidConfiguration,
                "launch: block (" + std::to_string(block.x) + "," + std::to_string(block.y) + "," +
                    std::to_string(block.z) + ") exceeds 1024 threads (x, y <= 1024, z <= 64)");
  if (grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535)
    return fail(cudaErrorInvalidConfiguration, "launch: grid (" + std::to_string(grid.x) + "," +
                                                   std::to_string(grid.y) + "," + std::to_string(grid.z) +
                                                   ") exceeds x <= 2^31-1, y, z <= 65535");
  auto opt = e.max_dynamic_shared.find(kernel);
  const size_t shared_limit = opt != e.max_dynamic_shared.end() ? static_cast<size_t>(opt->second) : kSharedDefault;
  if (dynamic_shared > shared_limit)
    return fail(cudaErrorInvalidValue, "launch: " + std::to_string(dynamic_shared) +
                                           " bytes of dynamic shared memory exceed the kernel's limit of " +
                                           std::to_string(shared_limit) +
                                           " (48 KB unless cudaFuncAttributeMaxDynamicSharedMemorySize opts in)");
  if (param_bytes > kParamLimit)
    return fail(cudaErrorInvalidValue, "launch: " + std::to_string(param_bytes) +
                                           " bytes of kernel parameters exceed 4096");
  CUstream_st* s = e.resolve(stream, tls_device);
  if (!s) return fail(cudaErrorInvalidResourceHandle, "launch: unknown or destroyed stream");
  if (s->device != tls_device)
    return fail(cudaErrorInvalidResourceHandle, "launch: the stream belongs to device " + std::to_string(s->device) +
                                                    " but device " + std::to_string(tls_device) + " is current");
  const uint64_t launch_seed = e.seed * 0xD1B54A32D192ED03ull + ++e.launches;
  auto shared_call = std::make_shared<std::unique_ptr<void, void (*)(void*)>>(std::move(owned));
  const KernelCall c{shared_call->get(), call.run, call.destroy};
  // A captured launch draws a new block order at each replay (it runs during a flush, under the
  // emulator's lock), so replays keep exposing order dependence.
  const bool captured = s->capture != nullptr;
  e.enqueue(s, [&e, c, grid, block, launch_seed, shared_call, captured] {
    e.run_grid(c, grid, block, captured ? e.seed * 0xD1B54A32D192ED03ull + ++e.launches : launch_seed);
  });
  g_counters.add(Counters::kLaunches);
  return cudaSuccess;
}

cudaError_t set_max_dynamic_shared(const void* kernel, int bytes) {
  if (bytes < 0 || static_cast<size_t>(bytes) > kSharedOptinMax)
    return fail(cudaErrorInvalidValue, "cudaFuncSetAttribute: more than the device's opt-in maximum");
  Emulator& e = Emulator::get();
  std::lock_guard<std::recursive_mutex> lock(e.mu);
  e.max_dynamic_shared[kernel] = bytes;
  return cudaSuccess;
}

}  // namespace cuda_emu

// ------------------------------------------------------------------ the runtime API
using cuda_emu::fail;
using cuda_emu::tls_device;
using cuda_emu::tls_last_error;

namespace {
cuda_emu::Emulator& emu() { return cuda_emu::Emulator::get(); }
#define EMU_LOCK std::lock_guard<std::recursive_mutex> emu_lock(emu().mu)
}  // namespace

namespace {
// The live allocation that starts at `ptr`, or an error.
cudaError_t find_allocation(void* ptr, const char* what, cuda_emu::AllocRecord** out) {
  cuda_emu::Emulator& e = emu();
  const auto a = reinterpret_cast<uintptr_t>(ptr);
  const int dev = e.device_of(a);
  if (dev < 0) return fail(cudaErrorInvalidValue, std::string(what) + ": not a device pointer");
  cuda_emu::DeviceState& d = e.devices[dev];
  auto it = std::find_if(d.live.begin(), d.live.end(), [&](cuda_emu::AllocRecord* r) { return r->begin == a; });
  if (it == d.live.end()) return fail(cudaErrorInvalidValue, std::string(what) + ": not the start of a live allocation");
  *out = *it;
  return cudaSuccess;
}

void release_allocation(cuda_emu::AllocRecord* r) {
  cuda_emu::Emulator& e = emu();
  cuda_emu::DeviceState& d = e.devices[e.device_of(r->begin)];
  auto it = std::find(d.live.begin(), d.live.end(), r);
  if (it == d.live.end()) return;  // freed twice through cudaFreeAsync: nothing left to drop
  d.live.erase(it);
  r->live.store(false);
  d.in_use -= r->map_end - r->map_begin;
  cuda_emu::g_counters.freed(r->end - r->begin);
  // Drop the pages but keep the range reserved and inaccessible: a later use faults.
  mmap(reinterpret_cast<void*>(r->map_begin), r->map_end - r->map_begin, PROT_NONE,
       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
}

cudaError_t complete_stream(cudaStream_t stream, const char* what) {
  EMU_LOCK;
  CUstream_st* s = emu().resolve(stream, tls_device);
  if (!s) return fail(cudaErrorInvalidResourceHandle, std::string(what) + ": unknown stream");
  if (s->capture) s->capture_invalidated = true;
  if (s->capture || emu().unsafe_during_capture())
    return fail(cudaErrorStreamCaptureUnsupported, std::string(what) + " while a stream captures");
  emu().flush_all(s);
  return cudaSuccess;
}

cudaError_t complete_event(cudaEvent_t event, const char* what) {
  EMU_LOCK;
  cuda_emu::Emulator& e = emu();
  if (!event || !e.events.count(event) || event->destroyed)
    return fail(cudaErrorInvalidResourceHandle, std::string(what) + ": unknown event");
  if (e.unsafe_during_capture())
    return fail(cudaErrorStreamCaptureUnsupported, std::string(what) + " while a stream captures");
  if (event->stream) e.flush(event->stream, event->position);
  return cudaSuccess;
}
}  // namespace

extern "C" {

cudaError_t cudaGetDeviceCount(int* count) {
  if (!count) return fail(cudaErrorInvalidValue);
  *count = emu().num_devices;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (!prop) return fail(cudaErrorInvalidValue);
  if (device < 0 || device >= emu().num_devices) return fail(cudaErrorInvalidDevice);
  std::memset(prop, 0, sizeof *prop);
  std::snprintf(prop->name, sizeof prop->name, "arrcoc emulated CUDA device %d (CPU, no GPU)", device);
  prop->totalGlobalMem = cuda_emu::kDeviceMemory;
  prop->sharedMemPerBlock = cuda_emu::kSharedDefault;
  prop->sharedMemPerBlockOptin = cuda_emu::kSharedOptinMax;
  prop->regsPerBlock = 65536;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = 1024;
  prop->maxThreadsDim[0] = prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 2147483647;
  prop->maxGridSize[1] = prop->maxGridSize[2] = 65535;
  prop->multiProcessorCount = emu().num_workers;
  prop->major = 9;
  prop->minor = 0;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  if (device < 0 || device >= emu().num_devices) return fail(cudaErrorInvalidDevice);
  tls_device = device;
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  if (!device) return fail(cudaErrorInvalidValue);
  emu();
  *device = tls_device;
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) {
  EMU_LOCK;
  cuda_emu::g_counters.host_sync(cuda_emu::Counters::kDeviceSyncs);
  if (emu().unsafe_during_capture())
    return fail(cudaErrorStreamCaptureUnsupported, "cudaDeviceSynchronize while a stream captures");
  emu().flush_device(tls_device);
  return cudaSuccess;
}

cudaError_t cudaGetLastError(void) {
  const cudaError_t e = tls_last_error;
  tls_last_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError(void) { return tls_last_error; }

const char* cudaGetErrorName(cudaError_t error) {
  switch (error) {
#define EMU_NAME(x) \
  case x: return #x;
    EMU_NAME(cudaSuccess)
    EMU_NAME(cudaErrorInvalidValue)
    EMU_NAME(cudaErrorMemoryAllocation)
    EMU_NAME(cudaErrorInitializationError)
    EMU_NAME(cudaErrorInvalidConfiguration)
    EMU_NAME(cudaErrorInvalidPitchValue)
    EMU_NAME(cudaErrorInvalidMemcpyDirection)
    EMU_NAME(cudaErrorInsufficientDriver)
    EMU_NAME(cudaErrorInvalidDeviceFunction)
    EMU_NAME(cudaErrorNoDevice)
    EMU_NAME(cudaErrorInvalidDevice)
    EMU_NAME(cudaErrorInvalidResourceHandle)
    EMU_NAME(cudaErrorNotReady)
    EMU_NAME(cudaErrorIllegalAddress)
    EMU_NAME(cudaErrorLaunchOutOfResources)
    EMU_NAME(cudaErrorNotSupported)
    EMU_NAME(cudaErrorIllegalState)
    EMU_NAME(cudaErrorStreamCaptureUnsupported)
    EMU_NAME(cudaErrorStreamCaptureInvalidated)
    EMU_NAME(cudaErrorStreamCaptureIsolation)
    EMU_NAME(cudaErrorStreamCaptureImplicit)
    EMU_NAME(cudaErrorCapturedEvent)
    EMU_NAME(cudaErrorStreamCaptureWrongThread)
#undef EMU_NAME
  }
  return "cudaErrorUnknown";
}

const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidPitchValue: return "invalid pitch argument";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    default: return "unknown error";
  }
}

cudaError_t cudaMalloc(void** ptr, size_t size) {
  cuda_emu::g_counters.add(cuda_emu::Counters::kMalloc);
  if (!ptr) return fail(cudaErrorInvalidValue);
  EMU_LOCK;
  cuda_emu::Emulator& e = emu();
  if (e.unsafe_during_capture()) return fail(cudaErrorStreamCaptureUnsupported, "cudaMalloc while a stream captures");
  cuda_emu::DeviceState& d = e.devices[tls_device];
  const size_t page = cuda_emu::page_size();
  const size_t bytes = std::max<size_t>(size, 1);
  const size_t span = (bytes + cuda_emu::kAllocAlign - 1) / cuda_emu::kAllocAlign * cuda_emu::kAllocAlign;
  const size_t pages = (span + page - 1) / page * page;
  const size_t n = d.num_records.load();
  if (d.in_use + pages > cuda_emu::kDeviceMemory || d.bump + pages + page > d.base + cuda_emu::kRegionBytes ||
      n >= cuda_emu::kMaxRecords) {
    *ptr = nullptr;
    return fail(cudaErrorMemoryAllocation);
  }
  // Map first: when the host refuses (e.g. vm.max_map_count reached by many live allocations), the
  // caller gets the out-of-memory error a device would give, and nothing is recorded.
  void* base = reinterpret_cast<void*>(d.bump);
  if (mmap(base, pages, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED) {
    const int err = errno;
    // A failed MAP_FIXED may already have unmapped the range (Linux before 6.12): reserve it again,
    // or the host could map its own memory there and a later cudaMalloc would map over it.
    if (mmap(base, pages, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0) == MAP_FAILED)
      cuda_emu::fatal("cannot keep the emulated device's address range reserved");
    *ptr = nullptr;
    return fail(cudaErrorMemoryAllocation, "cudaMalloc: the host refused to map " + std::to_string(pages) +
                                               " bytes of emulated device memory (" + std::strerror(err) + ")");
  }
  cuda_emu::AllocRecord& r = d.records[n];
  r.map_begin = d.bump;
  r.map_end = d.bump + pages;
  r.end = r.map_end;  // the data ends where the pages end: an overrun faults at once
  r.begin = r.end - span;
  r.end = r.begin + size;
  r.live.store(true);
  d.bump += pages + page;  // one unmapped guard page between allocations
  d.num_records.store(n + 1);
  d.in_use += pages;
  std::memset(base, 0xFF, pages);  // poison: NaN as float16/32/64, -1 as integers
  d.live.push_back(&r);
  if (e.granted != tls_device) e.protect(&r, PROT_NONE);
  cuda_emu::g_counters.allocated(size);
  *ptr = reinterpret_cast<void*>(r.begin);
  return cudaSuccess;
}

// Stream-ordered allocation: the memory exists at once (work queued before it cannot touch it).
cudaError_t cudaMallocAsync(void** ptr, size_t size, cudaStream_t stream) {
  EMU_LOCK;
  CUstream_st* s = emu().resolve(stream, tls_device);
  if (!s || s->capture) {
    cuda_emu::g_counters.add(cuda_emu::Counters::kMalloc);
    if (s) s->capture_invalidated = true;
    return s ? fail(cudaErrorNotSupported, "cudaMallocAsync: memory nodes in a capture are not emulated")
             : fail(cudaErrorInvalidResourceHandle, "cudaMallocAsync: unknown or destroyed stream");
  }
  return cudaMalloc(ptr, size);
}

cudaError_t cudaFree(void* ptr) {
  cuda_emu::g_counters.add(cuda_emu::Counters::kFree);
  if (!ptr) return cudaSuccess;
  EMU_LOCK;
  cuda_emu::AllocRecord* r = nullptr;
  if (const cudaError_t err = find_allocation(ptr, "cudaFree", &r); err != cudaSuccess) return err;
  if (emu().unsafe_during_capture()) return fail(cudaErrorStreamCaptureUnsupported, "cudaFree while a stream captures");
  cuda_emu::g_counters.host_sync(cuda_emu::Counters::kImplicitSyncs);
  emu().flush_device(emu().device_of(r->begin));  // cudaFree synchronizes: queued work that uses the memory runs first
  release_allocation(r);
  return cudaSuccess;
}

// Stream-ordered free: the memory goes once the work queued before it on `stream` has run.
cudaError_t cudaFreeAsync(void* ptr, cudaStream_t stream) {
  cuda_emu::g_counters.add(cuda_emu::Counters::kFree);
  if (!ptr) return cudaSuccess;
  EMU_LOCK;
  cuda_emu::Emulator& e = emu();
  CUstream_st* s = e.resolve(stream, tls_device);
  if (!s) return fail(cudaErrorInvalidResourceHandle, "cudaFreeAsync: unknown or destroyed stream");
  if (s->capture) {
    s->capture_invalidated = true;
    return fail(cudaErrorNotSupported, "cudaFreeAsync: memory nodes in a capture are not emulated");
  }
  cuda_emu::AllocRecord* r = nullptr;
  if (const cudaError_t err = find_allocation(ptr, "cudaFreeAsync", &r); err != cudaSuccess) return err;
  if (e.device_of(r->begin) != s->device)
    return fail(cudaErrorInvalidValue, "cudaFreeAsync: the memory belongs to another device than the stream");
  e.enqueue(s, [r] { release_allocation(r); });
  return cudaSuccess;
}

cudaError_t cudaMallocHost(void** ptr, size_t size) {
  cuda_emu::g_counters.add(cuda_emu::Counters::kMallocHost);
  if (!ptr) return fail(cudaErrorInvalidValue);
  EMU_LOCK;
  void* p = nullptr;
  if (posix_memalign(&p, 4096, std::max<size_t>(size, 1)) != 0) return fail(cudaErrorMemoryAllocation);
  emu().pinned[reinterpret_cast<uintptr_t>(p)] = std::max<size_t>(size, 1);
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaFreeHost(void* ptr) {
  cuda_emu::g_counters.add(cuda_emu::Counters::kFreeHost);
  if (!ptr) return cudaSuccess;
  EMU_LOCK;
  cuda_emu::Emulator& e = emu();
  auto it = e.pinned.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == e.pinned.end()) return fail(cudaErrorInvalidValue, "cudaFreeHost: not from cudaMallocHost");
  if (e.unsafe_during_capture()) return fail(cudaErrorStreamCaptureUnsupported, "cudaFreeHost while a stream captures");
  cuda_emu::g_counters.host_sync(cuda_emu::Counters::kImplicitSyncs);
  for (int d = 0; d < e.num_devices; ++d) e.flush_device(d);  // synchronizes, as CUDA's does
  e.pinned.erase(it);
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* attributes, const void* ptr) {
  if (!attributes) return fail(cudaErrorInvalidValue);
  EMU_LOCK;
  cuda_emu::Emulator& e = emu();
  const auto a = reinterpret_cast<uintptr_t>(ptr);
  std::memset(attributes, 0, sizeof *attributes);
  attributes->device = -2;
  if (e.device_of(a) >= 0) {
    attributes->type = cudaMemoryTypeDevice;
    attributes->device = e.device_of(a);
    attributes->devicePointer = const_cast<void*>(ptr);
  } else if (e.is_pinned(a, 1)) {
    attributes->type = cudaMemoryTypeHost;
    attributes->device = 0;
    attributes->hostPointer = attributes->devicePointer = const_cast<void*>(ptr);
  } else {
    attributes->type = cudaMemoryTypeUnregistered;
    attributes->hostPointer = const_cast<void*>(ptr);
  }
  return cudaSuccess;
}

cudaError_t cudaMemset(void* ptr, int value, size_t count) {
  EMU_LOCK;
  return cuda_emu::enqueue_memset(emu(), ptr, value, count, nullptr, true);
}

cudaError_t cudaMemsetAsync(void* ptr, int value, size_t count, cudaStream_t stream) {
  EMU_LOCK;
  return cuda_emu::enqueue_memset(emu(), ptr, value, count, stream, false);
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
  EMU_LOCK;
  return cuda_emu::enqueue_copy(emu(), static_cast<char*>(dst), count, static_cast<const char*>(src), count, count,
                                1, kind, nullptr, true);
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind, cudaStream_t stream) {
  EMU_LOCK;
  return cuda_emu::enqueue_copy(emu(), static_cast<char*>(dst), count, static_cast<const char*>(src), count, count,
                                1, kind, stream, false);
}

cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                              cudaMemcpyKind kind, cudaStream_t stream) {
  EMU_LOCK;
  return cuda_emu::enqueue_copy(emu(), static_cast<char*>(dst), dpitch, static_cast<const char*>(src), spitch, width,
                                height, kind, stream, false);
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, cudaStreamDefault); }

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags) {
  if (!stream) return fail(cudaErrorInvalidValue);
  EMU_LOCK;
  *stream = emu().new_stream(tls_device, (flags & cudaStreamNonBlocking) == 0, false);
  return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  EMU_LOCK;
  cuda_emu::Emulator& e = emu();
  CUstream_st* s = stream == cudaStreamLegacy || stream == cudaStreamPerThread || !stream ? nullptr
                                                                                          : e.resolve(stream, tls_device);
  if (!s) return fail(cudaErrorInvalidResourceHandle, "cudaStreamDestroy: unknown stream");
  if (s->capture) return fail(cudaErrorIllegalState, "cudaStreamDestroy: the stream is capturing (end the capture first)");
  e.flush_all(s);  // its work still completes
  s->destroyed = true;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  cuda_emu::g_counters.host_sync(cuda_emu::Counters::kStreamSyncs);
  return complete_stream(stream, "cudaStreamSynchronize");
}

// A query is a point where the host may observe completion: the emulator completes the work then
// (an always-"not ready" answer would hang a polling loop).
cudaError_t cudaStreamQuery(cudaStream_t stream) {
  cuda_emu::g_counters.add(cuda_emu::Counters::kQueries);
  return complete_stream(stream, "cudaStreamQuery");
}

cudaError_t cudaStreamGetDevice(cudaStream_t stream, int* device) {
  EMU_LOCK;
  CUstream_st* s = emu().resolve(stream, tls_device);  // the legacy and per-thread streams: the current device's
  if (!s || !device) return fail(cudaErrorInvalidResourceHandle, "cudaStreamGetDevice: unknown or destroyed stream");
  *device = s->device;
  return cudaSuccess;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int) {
  EMU_LOCK;
  cuda_emu::Emulator& e = emu();
  CUstream_st* s = e.resolve(stream, tls_device);
  if (!s || !event || !e.events.count(event) || event->destroyed)
    return fail(cudaErrorInvalidResourceHandle, "cudaStreamWaitEvent: unknown stream or event");
  if (s->capture) {  // an event of captured work is not emulated; one of uncaptured work is CUDA's isolation error
    s->capture_invalidated = true;
    return fail(cudaErrorStreamCaptureIsolation, "cudaStreamWaitEvent: a capturing stream cannot wait on work outside the capture");
  }
  if (event->stream) e.enqueue_wait(s, event->stream, event->position);
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, cudaEventDefault); }

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int) {
  if (!event) return fail(cudaErrorInvalidValue);
  EMU_LOCK;
  auto* ev = new CUevent_st();
  ev->device = tls_device;
  emu().events.insert(ev);
  *event = ev;
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  EMU_LOCK;
  if (!event || !emu().events.count(event) || event->destroyed)
    return fail(cudaErrorInvalidResourceHandle, "cudaEventDestroy: unknown event");
  event->destroyed = true;  // kept: a stream may still wait on its position
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  EMU_LOCK;
  cuda_emu::Emulator& e = emu();
  CUstream_st* s = e.resolve(stream, tls_device);
  if (!s || !event || !e.events.count(event) || event->destroyed)
    return fail(cudaErrorInvalidResourceHandle, "cudaEventRecord: unknown stream or event");
  if (event->device != s->device)
    return fail(cudaErrorInvalidResourceHandle, "cudaEventRecord: the event belongs to device " +
                                                    std::to_string(event->device) + ", the stream to device " +
                                                    std::to_string(s->device));
  if (s->capture) {
    s->capture_invalidated = true;
    return fail(cudaErrorNotSupported, "cudaEventRecord: events inside a capture are not emulated");
  }
  event->stream = s;
  event->position = e.enqueue(s, [] {});
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  cuda_emu::g_counters.host_sync(cuda_emu::Counters::kEventSyncs);
  return complete_event(event, "cudaEventSynchronize");
}

cudaError_t cudaEventQuery(cudaEvent_t event) {
  cuda_emu::g_counters.add(cuda_emu::Counters::kQueries);
  return complete_event(event, "cudaEventQuery");
}

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  EMU_LOCK;
  cuda_emu::Emulator& e = emu();
  if (stream == nullptr || stream == cudaStreamLegacy)
    return fail(cudaErrorStreamCaptureUnsupported, "cudaStreamBeginCapture: the legacy default stream cannot capture");
  CUstream_st* s = e.resolve(stream, tls_device);
  if (!s) return fail(cudaErrorInvalidResourceHandle, "cudaStreamBeginCapture: unknown stream");
  if (s->capture) return fail(cudaErrorIllegalState, "cudaStreamBeginCapture: the stream is already capturing");
  s->capture = new CUgraph_st();
  s->capture->device = s->device;
  s->capture_invalidated = false;
  s->capture_mode = mode;
  s->capture_thread = std::this_thread::get_id();
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  if (!graph) return fail(cudaErrorInvalidValue);
  EMU_LOCK;
  CUstream_st* s = emu().resolve(stream, tls_device);
  if (!s || !s->capture) return fail(cudaErrorIllegalState, "cudaStreamEndCapture: the stream is not capturing");
  if (s->capture_mode != cudaStreamCaptureModeRelaxed && s->capture_thread != std::this_thread::get_id())
    return fail(cudaErrorStreamCaptureWrongThread, "cudaStreamEndCapture: called from another thread than the capture began on");
  CUgraph_st* g = s->capture;
  s->capture = nullptr;
  if (s->capture_invalidated) {
    delete g;
    *graph = nullptr;
    return fail(cudaErrorStreamCaptureInvalidated, "cudaStreamEndCapture: the capture was invalidated by a refused call");
  }
  cuda_emu::g_counters.add(cuda_emu::Counters::kCaptures);
  *graph = g;
  return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status) {
  if (!status) return fail(cudaErrorInvalidValue);
  EMU_LOCK;
  CUstream_st* s = emu().resolve(stream, tls_device);
  if (!s) return fail(cudaErrorInvalidResourceHandle, "cudaStreamIsCapturing: unknown stream");
  *status = !s->capture ? cudaStreamCaptureStatusNone
                        : s->capture_invalidated ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiateWithFlags(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  if (!exec || !graph) return fail(cudaErrorInvalidValue, "cudaGraphInstantiateWithFlags: null graph or output");
  EMU_LOCK;
  auto* x = new CUgraphExec_st();
  static_cast<CUgraph_st&>(*x) = *graph;  // independent of the graph afterwards, as in CUDA
  *exec = x;
  return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  if (!exec) return fail(cudaErrorInvalidValue, "cudaGraphLaunch: null graph");
  EMU_LOCK;
  cuda_emu::Emulator& e = emu();
  CUstream_st* s = e.resolve(stream, tls_device);
  if (!s) return fail(cudaErrorInvalidResourceHandle, "cudaGraphLaunch: unknown or destroyed stream");
  if (s->device != exec->device)
    return fail(cudaErrorInvalidValue, "cudaGraphLaunch: the graph was captured on device " + std::to_string(exec->device) +
                                           ", the stream is on device " + std::to_string(s->device));
  if (s->capture) {
    s->capture_invalidated = true;
    return fail(cudaErrorNotSupported, "cudaGraphLaunch: a graph inside a capture is not emulated");
  }
  // One step on the stream that runs the captured steps in their order; the executable may be
  // destroyed before it runs (CUDA frees it once its launches finish): the step holds a copy.
  auto steps = std::make_shared<std::vector<std::function<void()>>>(exec->steps);
  e.enqueue(s, [steps] {
    for (auto& step : *steps) step();
  });
  cuda_emu::g_counters.add(cuda_emu::Counters::kGraphLaunches);
  return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  if (!exec) return fail(cudaErrorInvalidValue);
  EMU_LOCK;
  delete exec;
  return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  if (!graph) return fail(cudaErrorInvalidValue);
  EMU_LOCK;
  delete graph;
  return cudaSuccess;
}

size_t arrcoc_emu_read_counters(const char** names, unsigned long long* values, size_t capacity) {
  using cuda_emu::Counters;
  for (size_t i = 0; i < capacity && i < Counters::kCount; ++i) {
    if (names) names[i] = Counters::kNames[i];
    if (values) values[i] = cuda_emu::g_counters.v[i].load();
  }
  return Counters::kCount;
}

void arrcoc_emu_reset_counters(void) { cuda_emu::g_counters.reset(); }

}  // extern "C"
