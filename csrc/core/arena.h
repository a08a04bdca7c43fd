// Device or host memory owned by one operator, allocated at creation and freed with it (internal).
#pragma once

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "arrcoc/frame.h"
#include "arrcoc/status.h"
#include "cuda_backend.h"

namespace arrcoc {

// ARRCOC_POISON_ALLOCATIONS=1 (the tests set it): every host allocation of an operator starts as
// 0xFF bytes (NaN as float16/32, -1 as integers), as the emulated device's memory does, so an
// output element a CPU kernel never writes shows up instead of reading as whatever the pages held.
// Read once; off by default (filling costs a pass over the memory at creation).
inline bool poison_allocations() {
  static const bool on = [] {
    const char* v = std::getenv("ARRCOC_POISON_ALLOCATIONS");
    return v != nullptr && *v != '\0' && std::string(v) != "0";
  }();
  return on;
}

// One output of a run: where it starts and how many bytes it has.
struct OutputRegion {
  void* data;
  size_t bytes;
};

// Fills each output with 0xFF bytes before a run when poison_allocations() is on, so an element
// this frame does not write fails a comparison instead of showing the last frame's: on the host
// now; on a device as memsets queued on `stream` ahead of the run (outside its captured graph, so
// the graphs are the same with and without; the tests only).
inline Status poison_outputs(Device d, void* stream, std::initializer_list<OutputRegion> outputs) {
  if (!poison_allocations()) return Status::Ok();
  for (const OutputRegion& o : outputs) {
    if (!o.data || !o.bytes) continue;
    if (d == Device::kCPU) {
      std::memset(o.data, 0xFF, o.bytes);
    } else {
      Status s = cuda::memset_async(o.data, 0xFF, o.bytes, stream);
      if (!s.ok()) return s;
    }
  }
  return Status::Ok();
}

// An output region of n elements of T.
template <typename T>
inline OutputRegion output_of(T* p, size_t n) {
  return {const_cast<void*>(static_cast<const void*>(p)), n * sizeof(T)};
}

// Allocations on one device (64-byte aligned on the host), freed together.
class Arena {
 public:
  explicit Arena(Device d) : device_(d) {}
  ~Arena() { release(); }
  // Frees everything now (CUDA: call with the arena's device current, see DeviceGuard).
  void release() {
    for (void* p : blocks_) device_ == Device::kCPU ? std::free(p) : cuda::free_device(p);
    blocks_.clear();
  }
  Status alloc(size_t bytes, void** out) {
    bytes = std::max<size_t>(64, (bytes + 63) / 64 * 64);
    void* p = nullptr;
    if (device_ == Device::kCPU) {
      p = std::aligned_alloc(64, bytes);
      if (!p) return Status(StatusCode::kOutOfMemory, "host allocation of " + std::to_string(bytes) + " bytes failed");
      if (poison_allocations()) std::memset(p, 0xFF, bytes);
    } else {
      Status s = cuda::malloc_device(&p, bytes);
      if (!s.ok()) return s;
    }
    blocks_.push_back(p);
    *out = p;
    return Status::Ok();
  }
  template <typename T>
  Status alloc_n(size_t n, T** out) {
    void* p = nullptr;
    Status s = alloc(n * sizeof(T), &p);
    *out = static_cast<T*>(p);
    return s;
  }

 private:
  Device device_;
  std::vector<void*> blocks_;
};

// CPU worker threads for a config's num_threads (0 = all hardware threads).
inline int worker_threads(int num_threads) {
  return num_threads > 0 ? num_threads : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

// An operator about to run on `device`. CPU: the processor must have what the CPU backend was
// compiled for (x86-64-v3 by default: AVX2, FMA, F16C) - an error status, not a crash, if not.
// CUDA: the backend must be compiled in and the device present (the caller's current device is
// left as it was; operators make theirs current in a DeviceGuard for each call).
inline Status prepare_device(Device device, int ordinal) {
  if (device != Device::kCPU && device != Device::kCUDA)  // a cast integer, not an enumerator
    return Status(StatusCode::kInvalidArgument,
                  "device " + std::to_string(static_cast<int>(device)) + " is not a Device; expected cpu or cuda");
  if (device == Device::kCPU) {
#if defined(ARRCOC_CPU_X86_64_V3)
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")))
      return Status(StatusCode::kInvalidArgument,
                    "this CPU lacks AVX2/FMA/F16C, which this build's CPU backend needs (x86-64-v3); "
                    "rebuild with -DARRCOC_CPU_BASELINE=OFF (env CMAKE_ARGS) or use device='cuda'");
#endif
    return Status::Ok();
  }
  if (!cuda::compiled()) return cuda::set_device(0);  // answers "not built with CUDA"
  // No usable device (no GPU, or no driver), or no such ordinal: set_device says which and changes
  // nothing. Not left to the DeviceGuard: without a driver cudaGetDevice still answers 0, so a guard
  // for device 0 saw nothing to switch and the first cudaMalloc failed instead (kCudaError).
  const int n = cuda::device_count();
  if (ordinal < 0 || ordinal >= n) return cuda::set_device(ordinal);
  cuda::DeviceGuard check(ordinal);
  return check.status();
}

// The ordinal a DeviceGuard takes for an operator: its CUDA device, or -1 (nothing) on the CPU.
inline int guard_ordinal(Device device, int ordinal) { return device == Device::kCUDA ? ordinal : -1; }

// The body of an operator's create() once its config checked out (`checked`: check_config's
// status): the device prepared and made current, the Impl built and its buffers allocated for the
// config's maximum sizes, then handed to `wrap` (which stores it in the caller's unique_ptr).
template <typename Impl, typename Config, typename Wrap>
Status create_operator(const Config& config, Status checked, Wrap&& wrap) {
  if (!checked.ok()) return checked;
  Status s = prepare_device(config.device, config.cuda_device);
  if (!s.ok()) return s;
  cuda::DeviceGuard on(guard_ordinal(config.device, config.cuda_device));
  auto impl = std::make_unique<Impl>(config);
  if (!(s = impl->allocate()).ok()) return s;
  wrap(std::move(impl));
  return Status::Ok();
}

// An operator's last call (its done event), waited for by the host (synchronize()) or by a
// caller's stream (wait_on_stream()), on the operator's device. Nothing to wait for on the CPU or
// before the first call (`ran`).
inline Status host_waits_for_last_call(Device device, int ordinal, bool ran, void* done_event) {
  if (device == Device::kCPU || !ran) return Status::Ok();
  cuda::DeviceGuard on(ordinal);
  return on.status().ok() ? cuda::event_synchronize(done_event) : on.status();
}
inline Status stream_waits_for_last_call(void* stream, Device device, int ordinal, bool ran, void* done_event) {
  if (device == Device::kCPU || !ran) return Status::Ok();
  cuda::DeviceGuard on(ordinal);
  return on.status().ok() ? cuda::stream_wait_event(stream, done_event) : on.status();
}

// An operator's buffers are reused from one call to the next: each call's stream first waits for
// the last call's work (event). Always, not only when the handle changes: a destroyed stream's
// handle can come back for a new stream, and cudaStreamPerThread is another stream per thread.
class StreamOrder {
 public:
  Status before(void* stream, void* done_event) const {
    if (!used_) return Status::Ok();
    return cuda::stream_wait_event(stream, done_event);
  }
  void after(void* stream) {
    last_ = stream;
    used_ = true;
  }
  void* last() const { return last_; }

 private:
  void* last_ = nullptr;
  bool used_ = false;
};

// One frame of a stage whose outputs are `outputs`: on the CPU the tests' poison, then cpu_run();
// on a device, after the last call's work (`order`), the poison and device_run() queued on
// `stream`, then `done_event` recorded there. Sets *ran once the frame's work exists to wait for:
// a CPU run that succeeded, or any device work whose event was recorded (also when a later step
// failed, so the next call and every wait come after the partial work).
template <typename CpuRun, typename DeviceRun>
Status run_stage(Device device, void* stream, void* done_event, StreamOrder& order,
                 std::initializer_list<OutputRegion> outputs, CpuRun cpu_run, DeviceRun device_run, bool* ran) {
  if (device == Device::kCPU) {
    Status s = poison_outputs(device, nullptr, outputs);
    if (s.ok()) s = cpu_run();
    if (s.ok()) *ran = true;
    return s;
  }
  Status s = order.before(stream, done_event);
  if (!s.ok()) return s;
  s = poison_outputs(device, stream, outputs);
  if (s.ok()) s = device_run();
  const Status r = cuda::event_record(done_event, stream);
  if (r.ok()) {
    order.after(stream);
    *ran = true;
  }
  return s.ok() ? r : s;
}

// "cpu" or "cuda:N", for messages.
inline std::string device_label(Device device, int ordinal) {
  return device == Device::kCUDA ? "cuda:" + std::to_string(ordinal) : std::string("cpu");
}

}  // namespace arrcoc
