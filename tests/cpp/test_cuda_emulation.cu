// Proves that each guard of the emulated CUDA device (csrc/cuda_emu/) fires: scrambled block and
// thread order, a missing __syncthreads, launch limits, poisoned and protected device memory,
// lazy streams, and two devices that refuse each other's memory. Built only with
// ARRCOC_CUDA=EMULATE (the same kernel syntax as csrc/cuda/, through launch.cuh). Crashes that
// the emulator must cause run in a forked child whose death and message are checked.
#include <cuda_emu_counters.h>
#include <cuda_runtime.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "../../csrc/cuda/launch.cuh"

#include "check.h"

using arrcoc::cuda::launch;

namespace {

using arrcoc_test::check;

// ------------------------------------------------------------------ kernels
__global__ void ticket_kernel(int* counter, int* ticket_of_block) {
  if (threadIdx.x == 0) ticket_of_block[blockIdx.x] = atomicAdd(counter, 1);
}

__global__ void thread_ticket_kernel(int* counter, int* ticket_of_thread) {
  ticket_of_thread[threadIdx.x] = atomicAdd(counter, 1);
}

// Each thread reads its neighbour's shared slot: correct only with the barrier between.
template <bool kBarrier>
__global__ void neighbour_kernel(int* out) {
  __shared__ int slot[256];
  const int t = threadIdx.x;
  slot[t] = t * 3 + 1;
  if (kBarrier) __syncthreads();
  out[t] = slot[(t + 1) % blockDim.x];
}

__global__ void fill_kernel(float* p, int n, float v) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) p[i] = v;
}

__global__ void read_kernel(const float* p, float* out) { out[0] = p[0]; }

__global__ void write_past_end_kernel(float* p, int n) { p[n + 1024] = 1.0f; }

__global__ void divergent_barrier_kernel(int* out) {
  if (threadIdx.x % 2 == 0) return;
  __syncthreads();
  out[threadIdx.x] = 1;
}

struct BigParams {
  char bytes[4100];
};
__global__ void big_params_kernel(BigParams p, int* out) { out[0] = p.bytes[0]; }

__global__ void dynamic_shared_kernel(int* out) { out[0] = 1; }

// ------------------------------------------------------------------ helpers
template <typename T>
T* device_alloc(size_t n) {
  void* p = nullptr;
  if (cudaMalloc(&p, n * sizeof(T)) != cudaSuccess) {
    std::fprintf(stderr, "cudaMalloc failed\n");
    std::exit(2);
  }
  return static_cast<T*>(p);
}

template <typename T>
std::vector<T> to_host(const T* d, size_t n) {
  std::vector<T> h(n);
  cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost);
  return h;
}

// Runs `body` in a child process; true if the child died of `sig` and its stderr mentions `text`.
bool dies_with(const std::function<void()>& body, int sig, const char* text, std::string* err_out) {
  int fds[2];
  if (pipe(fds) != 0) return false;
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 2);
    close(fds[0]);
    body();
    std::_Exit(0);  // survived: the guard did not fire
  }
  close(fds[1]);
  std::string err;
  char buf[512];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) err.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  *err_out = err;
  return WIFSIGNALED(status) && WTERMSIG(status) == sig && err.find(text) != std::string::npos;
}

// ------------------------------------------------------------------ tests
void test_scrambled_order() {
  constexpr int kBlocks = 64, kThreads = 128;
  int* counter = device_alloc<int>(1);
  int* tickets = device_alloc<int>(kBlocks);
  std::vector<int> first;
  for (int run = 0; run < 2; ++run) {
    cudaMemset(counter, 0, sizeof(int));
    launch(ticket_kernel, kBlocks, 32, 0, nullptr)(counter, tickets);
    std::vector<int> t = to_host(tickets, kBlocks);
    int in_order = 0;
    for (int b = 0; b < kBlocks; ++b) in_order += t[b] == b;
    check(in_order < kBlocks / 2, "blocks run in a scrambled order (" + std::to_string(in_order) + " of 64 in place)");
    if (run == 0) first = t;
    else check(t != first, "two launches run their blocks in different orders");
  }
  int* thread_tickets = device_alloc<int>(kThreads);
  cudaMemset(counter, 0, sizeof(int));
  launch(thread_ticket_kernel, 1, kThreads, 0, nullptr)(counter, thread_tickets);
  std::vector<int> t = to_host(thread_tickets, kThreads);
  int in_order = 0;
  for (int i = 0; i < kThreads; ++i) in_order += t[i] == i;
  check(in_order < kThreads / 2, "threads of a block run in a scrambled order");
  cudaFree(counter);
  cudaFree(tickets);
  cudaFree(thread_tickets);
}

void test_missing_barrier_is_caught() {
  constexpr int n = 256;
  int* out = device_alloc<int>(n);
  auto wrong = [&](bool barrier) {
    if (barrier) launch(neighbour_kernel<true>, 1, n, 0, nullptr)(out);
    else launch(neighbour_kernel<false>, 1, n, 0, nullptr)(out);
    check(cudaGetLastError() == cudaSuccess, "neighbour_kernel launches");
    std::vector<int> h = to_host(out, n);
    int bad = 0;
    for (int t = 0; t < n; ++t) bad += h[t] != ((t + 1) % n) * 3 + 1;
    return bad;
  };
  check(wrong(true) == 0, "with __syncthreads every thread reads its neighbour's value");
  const int bad = wrong(false);
  check(bad > n / 4, "without __syncthreads the result is wrong (" + std::to_string(bad) + " of 256 threads)");
  cudaFree(out);
}

void test_launch_limits() {
  int* out = device_alloc<int>(1024);
  cudaGetLastError();
  launch(fill_kernel, 1, 1024, 0, nullptr)(reinterpret_cast<float*>(out), 1024, 0.0f);
  check(cudaGetLastError() == cudaSuccess, "1024 threads per block launch");
  launch(fill_kernel, 1, 1025, 0, nullptr)(reinterpret_cast<float*>(out), 1024, 0.0f);
  check(cudaGetLastError() == cudaErrorInvalidConfiguration, "1025 threads per block: cudaErrorInvalidConfiguration");
  check(cudaGetLastError() == cudaSuccess, "cudaGetLastError resets the error");
  launch(fill_kernel, dim3(1, 65536), 32, 0, nullptr)(reinterpret_cast<float*>(out), 1, 0.0f);
  check(cudaGetLastError() == cudaErrorInvalidConfiguration, "grid.y 65536: cudaErrorInvalidConfiguration");
  launch(fill_kernel, dim3(1, 1, 65536), 32, 0, nullptr)(reinterpret_cast<float*>(out), 1, 0.0f);
  check(cudaGetLastError() == cudaErrorInvalidConfiguration, "grid.z 65536: cudaErrorInvalidConfiguration");
  launch(dynamic_shared_kernel, 1, 32, 48 * 1024, nullptr)(out);
  check(cudaGetLastError() == cudaSuccess, "48 KB of dynamic shared memory launch");
  launch(dynamic_shared_kernel, 1, 32, 48 * 1024 + 1, nullptr)(out);
  check(cudaGetLastError() == cudaErrorInvalidValue, "48 KB + 1 of shared memory without opt-in: refused");
  check(cudaFuncSetAttribute(dynamic_shared_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 96 * 1024) ==
            cudaSuccess, "opt in to 96 KB");
  launch(dynamic_shared_kernel, 1, 32, 64 * 1024, nullptr)(out);
  check(cudaGetLastError() == cudaSuccess, "64 KB after opting in: launches");
  BigParams big{};
  launch(big_params_kernel, 1, 1, 0, nullptr)(big, out);
  check(cudaGetLastError() == cudaErrorInvalidValue, "4104 bytes of kernel parameters: refused");
  cudaDeviceSynchronize();
  cudaFree(out);
}

void test_device_memory_is_poisoned() {
  float* p = device_alloc<float>(100);
  std::vector<float> h = to_host(p, 100);
  bool all_nan = true;
  for (float v : h) all_nan = all_nan && std::isnan(v);
  check(all_nan, "fresh device memory reads as NaN");
  cudaFree(p);
}

void test_streams_are_lazy() {
  constexpr int n = 1000;
  float* d = device_alloc<float>(n);
  float* pinned = nullptr;
  cudaMallocHost(reinterpret_cast<void**>(&pinned), n * sizeof(float));
  for (int i = 0; i < n; ++i) pinned[i] = -7.0f;
  cudaStream_t s;
  cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
  launch(fill_kernel, (n + 255) / 256, 256, 0, s)(d, n, 42.0f);
  cudaMemcpyAsync(pinned, d, n * sizeof(float), cudaMemcpyDeviceToHost, s);
  check(pinned[0] == -7.0f && pinned[n - 1] == -7.0f, "a host read with no wait sees the old data");
  cudaStreamSynchronize(s);
  check(pinned[0] == 42.0f && pinned[n - 1] == 42.0f, "after cudaStreamSynchronize the copy has run");

  // Two streams: B reads what A writes; correct only with cudaStreamWaitEvent.
  cudaStream_t b;
  cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking);
  float* out = device_alloc<float>(1);
  float* fresh = device_alloc<float>(n);
  launch(fill_kernel, (n + 255) / 256, 256, 0, s)(fresh, n, 5.0f);
  launch(read_kernel, 1, 1, 0, b)(fresh, out);
  float h = 0;
  cudaMemcpy(&h, out, sizeof h, cudaMemcpyDeviceToHost);
  check(std::isnan(h), "a stream that does not wait reads poisoned memory");
  cudaEvent_t e;
  cudaEventCreateWithFlags(&e, cudaEventDisableTiming);
  float* fresh2 = device_alloc<float>(n);
  launch(fill_kernel, (n + 255) / 256, 256, 0, s)(fresh2, n, 6.0f);
  cudaEventRecord(e, s);
  cudaStreamWaitEvent(b, e, 0);
  launch(read_kernel, 1, 1, 0, b)(fresh2, out);
  cudaStreamSynchronize(b);
  cudaMemcpy(&h, out, sizeof h, cudaMemcpyDeviceToHost);
  check(h == 6.0f, "cudaStreamWaitEvent orders the streams");

  // The legacy default stream waits for blocking streams (and not for non-blocking ones).
  cudaStream_t blocking;
  cudaStreamCreate(&blocking);
  float* fresh3 = device_alloc<float>(n);
  launch(fill_kernel, (n + 255) / 256, 256, 0, blocking)(fresh3, n, 9.0f);
  cudaMemcpy(&h, fresh3, sizeof h, cudaMemcpyDeviceToHost);
  check(h == 9.0f, "a blocking cudaMemcpy on the legacy stream waits for blocking streams");
  float* fresh4 = device_alloc<float>(n);
  launch(fill_kernel, (n + 255) / 256, 256, 0, s)(fresh4, n, 3.0f);
  cudaMemcpy(&h, fresh4, sizeof h, cudaMemcpyDeviceToHost);
  check(std::isnan(h), "the legacy stream does not wait for a non-blocking stream");
  cudaDeviceSynchronize();
  for (cudaStream_t x : {s, b, blocking}) cudaStreamDestroy(x);
  cudaEventDestroy(e);
  for (float* x : {d, out, fresh, fresh2, fresh3, fresh4}) cudaFree(x);
  cudaFreeHost(pinned);
}

std::map<std::string, unsigned long long> counters() {
  const char* names[64];
  unsigned long long values[64];
  const size_t n = arrcoc_emu_read_counters(names, values, 64);
  std::map<std::string, unsigned long long> m;
  for (size_t i = 0; i < n && i < 64; ++i) m[names[i]] = values[i];
  return m;
}

// Each call is counted where tests/test_cuda_per_frame.py expects it.
void test_counters() {
  constexpr int n = 1000;
  cudaDeviceSynchronize();
  arrcoc_emu_reset_counters();
  auto c = counters();
  const unsigned long long base = c["device_bytes"];
  check(c["malloc_calls"] == 0 && c["host_syncs"] == 0 && c["peak_device_bytes"] == base, "reset zeroes the counts");
  float* d = device_alloc<float>(n);
  float* pinned = nullptr;
  cudaMallocHost(reinterpret_cast<void**>(&pinned), n * sizeof(float));
  cudaStream_t s;
  cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
  cudaEvent_t e;
  cudaEventCreateWithFlags(&e, cudaEventDisableTiming);
  launch(fill_kernel, (n + 255) / 256, 256, 0, s)(d, n, 1.0f);
  cudaMemsetAsync(d, 0, sizeof(float), s);
  cudaMemcpyAsync(pinned, d, n * sizeof(float), cudaMemcpyDeviceToHost, s);  // page-locked: no wait
  cudaEventRecord(e, s);
  c = counters();
  check(c["malloc_calls"] == 1 && c["malloc_host_calls"] == 1 && c["launches"] == 1 && c["async_copies"] == 2 &&
            c["host_syncs"] == 0,
        "queued work is counted, and no wait");
  check(c["device_bytes"] == base + n * sizeof(float), "device_bytes counts the bytes asked for");
  cudaEventSynchronize(e);
  cudaStreamSynchronize(s);
  cudaDeviceSynchronize();
  float h[4];
  cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost);
  cudaMemcpyAsync(h, d, sizeof h, cudaMemcpyDeviceToHost, s);  // pageable destination: returns complete
  cudaMemset(d, 0, sizeof(float));
  cudaStreamQuery(s);
  cudaEventQuery(e);
  c = counters();
  check(c["event_syncs"] == 1 && c["stream_syncs"] == 1 && c["device_syncs"] == 1 && c["blocking_copies"] == 2 &&
            c["blocking_memsets"] == 1 && c["host_syncs"] == 6,
        "each kind of host wait is counted, and their sum");
  check(c["queries"] == 2, "queries are counted apart from host waits");
  float* a = nullptr;
  cudaMallocAsync(reinterpret_cast<void**>(&a), 4096, s);
  check(counters()["peak_device_bytes"] == base + n * sizeof(float) + 4096, "the peak follows the live bytes");
  cudaFreeAsync(a, s);
  check(counters()["device_bytes"] == base + n * sizeof(float) + 4096, "cudaFreeAsync frees in stream order");
  cudaStreamSynchronize(s);
  cudaFree(d);
  cudaFreeHost(pinned);
  c = counters();
  check(c["malloc_calls"] == 2 && c["free_calls"] == 2 && c["free_host_calls"] == 1, "allocations and frees");
  check(c["implicit_syncs"] == 2 && c["host_syncs"] == 9, "cudaFree and cudaFreeHost wait for the device");
  check(c["device_bytes"] == base && c["peak_device_bytes"] == base + n * sizeof(float) + 4096,
        "freed bytes leave device_bytes, not the peak");
  cudaEventDestroy(e);
  cudaStreamDestroy(s);
}

// Kernels' atomics are counted (tests/test_cuda_per_frame.py::test_few_atomics_per_frame).
void test_atomics_are_counted() {
  int* counter = device_alloc<int>(1);
  int* tickets = device_alloc<int>(96);
  cudaMemset(counter, 0, sizeof(int));
  arrcoc_emu_reset_counters();
  check(counters()["atomics"] == 0, "reset zeroes the atomics");
  launch(thread_ticket_kernel, 1, 96, 0, nullptr)(counter, tickets);
  cudaDeviceSynchronize();
  check(counters()["atomics"] == 96, "each atomic a kernel sends is counted");
  cudaFree(counter);
  cudaFree(tickets);
}

void test_host_dereference_crashes() {
  float* d = device_alloc<float>(16);
  std::string err;
  check(dies_with([&] { std::printf("%f\n", static_cast<double>(*reinterpret_cast<volatile float*>(d))); }, SIGSEGV,
                  "host code dereferenced device memory", &err),
        "a host read of device memory crashes with a message; child said: " + err);
  check(dies_with([&] { *reinterpret_cast<volatile float*>(d) = 1.0f; }, SIGSEGV, "host code dereferenced device memory",
                  &err),
        "a host write to device memory crashes; child said: " + err);
  float* freed = device_alloc<float>(16);
  cudaFree(freed);
  check(dies_with([&] { launch(fill_kernel, 1, 16, 0, nullptr)(freed, 16, 1.0f); cudaDeviceSynchronize(); }, SIGSEGV,
                  "freed memory", &err),
        "a kernel writing freed memory crashes; child said: " + err);
  check(dies_with([&] { launch(write_past_end_kernel, 1, 1, 0, nullptr)(d, 16); cudaDeviceSynchronize(); }, SIGSEGV,
                  "touched", &err),
        "a kernel writing past an allocation crashes; child said: " + err);
  check(dies_with([&] {
          int* o = device_alloc<int>(64);
          launch(divergent_barrier_kernel, 1, 64, 0, nullptr)(o);
          cudaDeviceSynchronize();
        }, SIGABRT, "divergent barrier", &err),
        "a barrier that only some threads reach aborts; child said: " + err);
  cudaFree(d);
}

void test_two_devices() {
  int n = 0;
  cudaGetDeviceCount(&n);
  if (n < 2) {
    std::printf("skipping two-device checks: ARRCOC_EMU_DEVICES=%d\n", n);
    return;
  }
  cudaSetDevice(1);
  float* on1 = device_alloc<float>(64);
  cudaStream_t s1;
  cudaStreamCreate(&s1);
  cudaSetDevice(0);
  float* on0 = device_alloc<float>(64);
  float h[64];
  cudaGetLastError();
  check(cudaMemcpy(h, on1, sizeof h, cudaMemcpyDeviceToHost) == cudaErrorInvalidValue,
        "a copy of device 1's memory while device 0 is current is refused");
  check(cudaMemcpy(on0, on1, sizeof h, cudaMemcpyDeviceToDevice) == cudaErrorInvalidValue,
        "a device 1 -> device 0 copy on device 0's stream is refused");
  launch(fill_kernel, 1, 64, 0, s1)(on0, 64, 1.0f);
  check(cudaGetLastError() == cudaErrorInvalidResourceHandle,
        "a launch on device 1's stream while device 0 is current is refused");
  std::string err;
  check(dies_with([&] { launch(fill_kernel, 1, 64, 0, nullptr)(on1, 64, 1.0f); cudaDeviceSynchronize(); }, SIGSEGV,
                  "memory of another device", &err),
        "a kernel on device 0 touching device 1's memory crashes; child said: " + err);
  int current = -1;
  cudaGetDevice(&current);
  check(current == 0, "the current device is kept per host thread");
  cudaSetDevice(1);
  cudaStreamDestroy(s1);
  cudaFree(on1);
  cudaSetDevice(0);
  cudaFree(on0);
}

// Stream capture and graphs: nothing runs while capturing; a graph replays its kernels, memsets
// and page-locked copies in order, reading page-locked host memory when it runs; what CUDA
// refuses during a capture is refused and invalidates it.
__global__ void add_kernel(float* p, int n, float v) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) p[i] += v;
}

void test_graphs() {
  constexpr int n = 300;
  float* d = device_alloc<float>(n);
  float* pinned = nullptr;
  cudaMallocHost(reinterpret_cast<void**>(&pinned), n * sizeof(float));
  cudaStream_t cap, run;
  cudaStreamCreateWithFlags(&cap, cudaStreamNonBlocking);
  cudaStreamCreateWithFlags(&run, cudaStreamNonBlocking);
  cudaMemset(d, 0, n * sizeof(float));
  arrcoc_emu_reset_counters();

  check(cudaStreamBeginCapture(cap, cudaStreamCaptureModeThreadLocal) == cudaSuccess, "capture begins");
  cudaStreamCaptureStatus status;
  cudaStreamIsCapturing(cap, &status);
  check(status == cudaStreamCaptureStatusActive, "the stream reports an active capture");
  cudaMemcpyAsync(d, pinned, n * sizeof(float), cudaMemcpyHostToDevice, cap);  // page-locked: captured
  launch(add_kernel, (n + 127) / 128, 128, 0, cap)(d, n, 1.5f);
  cudaGraph_t graph = nullptr;
  check(cudaStreamEndCapture(cap, &graph) == cudaSuccess && graph, "capture ends with a graph");
  cudaGraphExec_t exec = nullptr;
  check(cudaGraphInstantiateWithFlags(&exec, graph, 0) == cudaSuccess && exec, "the graph instantiates");
  cudaGraphDestroy(graph);  // the executable does not need it
  float h = -1.0f;
  cudaMemcpy(&h, d, sizeof h, cudaMemcpyDeviceToHost);
  check(h == 0.0f, "nothing captured has run");

  for (int rep = 0; rep < 3; ++rep) {
    for (int i = 0; i < n; ++i) pinned[i] = static_cast<float>(10 * rep + i);  // read at replay
    check(cudaGraphLaunch(exec, run) == cudaSuccess, "the graph launches");
    cudaStreamSynchronize(run);
    float last = 0;
    cudaMemcpy(&h, d, sizeof h, cudaMemcpyDeviceToHost);
    cudaMemcpy(&last, d + n - 1, sizeof last, cudaMemcpyDeviceToHost);
    check(h == 10.0f * rep + 1.5f && last == 10.0f * rep + n - 1 + 1.5f,
          "replay " + std::to_string(rep) + ": the copy read the host memory at replay, then the kernel ran");
  }
  const auto c = counters();
  check(c.at("captures") == 1 && c.at("graph_launches") == 3 && c.at("launches") == 1,
        "counted: 1 capture, 3 graph launches, the one kernel launched into the capture");
  cudaGraphExecDestroy(exec);

  // What CUDA refuses while capturing: each fails, and the capture ends invalidated.
  std::vector<float> pageable(n, 2.0f);
  auto refused = [&](const char* what, const std::function<cudaError_t()>& call, cudaError_t want) {
    cudaStreamBeginCapture(cap, cudaStreamCaptureModeThreadLocal);
    const cudaError_t got = call();
    cudaGetLastError();
    cudaGraph_t g = nullptr;
    const cudaError_t ended = cudaStreamEndCapture(cap, &g);
    cudaGetLastError();
    check(got == want && ended == cudaErrorStreamCaptureInvalidated && g == nullptr,
          std::string(what) + ": refused (" + cudaGetErrorName(got) + ") and the capture invalidated");
  };
  setenv("ARRCOC_EMU_QUIET", "1", 1);
  refused("a pageable host copy", [&] {
    return cudaMemcpyAsync(d, pageable.data(), n * sizeof(float), cudaMemcpyHostToDevice, cap);
  }, cudaErrorStreamCaptureUnsupported);
  refused("cudaStreamSynchronize of the capturing stream", [&] { return cudaStreamSynchronize(cap); },
          cudaErrorStreamCaptureUnsupported);
  refused("cudaMalloc on the capturing thread", [&] {
    void* p = nullptr;
    return cudaMalloc(&p, 16);
  }, cudaErrorStreamCaptureUnsupported);
  refused("a blocking cudaMemcpy on the capturing thread", [&] {
    return cudaMemcpy(&h, d, sizeof h, cudaMemcpyDeviceToHost);
  }, cudaErrorStreamCaptureUnsupported);
  cudaEvent_t e;
  cudaEventCreate(&e);
  cudaEventRecord(e, run);
  refused("a wait on an event outside the capture", [&] { return cudaStreamWaitEvent(cap, e, 0); },
          cudaErrorStreamCaptureIsolation);
  unsetenv("ARRCOC_EMU_QUIET");
  cudaGraph_t none = nullptr;
  check(cudaStreamBeginCapture(nullptr, cudaStreamCaptureModeThreadLocal) == cudaErrorStreamCaptureUnsupported,
        "the legacy default stream cannot capture");
  cudaGetLastError();
  check(cudaStreamEndCapture(cap, &none) == cudaErrorIllegalState, "ending a capture that never began is an error");
  cudaGetLastError();

  // Thread-local mode: another thread may allocate while this one captures.
  cudaStreamBeginCapture(cap, cudaStreamCaptureModeThreadLocal);
  cudaError_t other = cudaErrorNotReady;
  std::thread([&] {
    void* p = nullptr;
    other = cudaMalloc(&p, 16);
    if (other == cudaSuccess) cudaFree(p);
  }).join();
  cudaGraph_t g = nullptr;
  check(other == cudaSuccess && cudaStreamEndCapture(cap, &g) == cudaSuccess && g,
        "thread-local capture: another thread's cudaMalloc neither fails nor invalidates it");
  if (g) cudaGraphDestroy(g);

  cudaEventDestroy(e);
  cudaStreamDestroy(cap);
  cudaStreamDestroy(run);
  cudaFree(d);
  cudaFreeHost(pinned);
}

}  // namespace

int main() {
  test_scrambled_order();
  test_missing_barrier_is_caught();
  test_launch_limits();
  test_device_memory_is_poisoned();
  test_streams_are_lazy();
  test_counters();
  test_atomics_are_counted();
  test_host_dereference_crashes();
  test_two_devices();
  test_graphs();
  return arrcoc_test::finish();
}
