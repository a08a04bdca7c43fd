// Thin, checked wrappers over the CUDA runtime for the dispatcher (csrc/core/cuda_backend.h).
#include <cuda_runtime.h>

#include <cstdio>
#include <string>

#include "../core/cuda_backend.h"
#include "cuda_check.h"

namespace arrcoc::cuda {

Status check(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return Status::Ok();
  // Consume the error this call reported, so that a later launch's cudaGetLastError() does not
  // report it again as its own.
  cudaGetLastError();
  return Status(StatusCode::kCudaError,
                std::string(what) + " failed: " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
}

bool compiled() noexcept { return true; }

int device_count() noexcept {
  int n = 0;
  // Without a driver this returns cudaErrorInsufficientDriver, not cudaErrorNoDevice:
  // any error means "no GPU". Clear the sticky error so later calls are not confused.
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

std::string device_name(int ordinal) noexcept {
  if (ordinal < 0 || ordinal >= device_count()) return std::string();
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, ordinal) != cudaSuccess) return std::string();
  return std::string(prop.name);
}

Status set_device(int ordinal) noexcept {
  const int n = device_count();
  if (n == 0)
    return Status(StatusCode::kNoCudaDevice,
                  "device='cuda' was requested but no CUDA device is usable (no GPU, or no driver)");
  if (ordinal < 0 || ordinal >= n)
    return Status(StatusCode::kOutOfRange, "cuda_device " + std::to_string(ordinal) +
                                               " does not exist; this machine has " + std::to_string(n));
  return check(cudaSetDevice(ordinal), "cudaSetDevice");
}

int current_device() noexcept {
  int d = 0;
  if (cudaGetDevice(&d) != cudaSuccess) {
    cudaGetLastError();
    return -1;  // no usable device: not a real ordinal
  }
  return d;
}

DeviceGuard::DeviceGuard(int ordinal) noexcept {
  if (ordinal < 0) return;
  previous_ = current_device();
  status_ = previous_ == ordinal ? Status::Ok() : set_device(ordinal);
  if (!status_.ok() || previous_ == ordinal) previous_ = -1;  // nothing to restore
}

DeviceGuard::~DeviceGuard() {
  if (previous_ >= 0) cudaSetDevice(previous_);
}

// What CUDA knows of `ptr` (unregistered host memory, and any error, read as plain host memory).
cudaPointerAttributes pointer_attributes(const void* ptr) {
  cudaPointerAttributes a{};
  a.type = cudaMemoryTypeUnregistered;
  if (ptr && cudaPointerGetAttributes(&a, ptr) != cudaSuccess) {
    cudaGetLastError();
    a.type = cudaMemoryTypeUnregistered;
  }
  return a;
}

int pointer_device(const void* ptr) noexcept {
  const cudaPointerAttributes a = pointer_attributes(ptr);
  return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged ? a.device : -1;
}

bool is_pinned_host(const void* ptr) noexcept { return pointer_attributes(ptr).type == cudaMemoryTypeHost; }

int device_only_memory(const void* ptr) noexcept {
  const cudaPointerAttributes a = pointer_attributes(ptr);
  return a.type == cudaMemoryTypeDevice ? a.device : -1;
}

// An allocation's result: out of memory is its own status code (the caller can shrink and retry).
Status allocation_status(cudaError_t err, const char* what, size_t bytes) {
  if (err != cudaErrorMemoryAllocation) return check(err, what);
  cudaGetLastError();
  char gib[32];
  std::snprintf(gib, sizeof gib, "%.2f", static_cast<double>(bytes) / (1ull << 30));
  return Status(StatusCode::kOutOfMemory, std::string(what) + " of " + std::to_string(bytes) + " bytes (" + gib +
                                              " GiB) failed: " + cudaGetErrorString(err));
}

Status malloc_device(void** ptr, size_t bytes) noexcept {
  return allocation_status(cudaMalloc(ptr, bytes), "cudaMalloc", bytes);
}

void free_device(void* ptr) noexcept {
  if (ptr) cudaFree(ptr);
}

Status memset_async(void* ptr, int value, size_t bytes, void* stream) noexcept {
  return check(cudaMemsetAsync(ptr, value, bytes, static_cast<cudaStream_t>(stream)), "cudaMemsetAsync");
}

Status copy_plane_to_device(void* dst, size_t dst_pitch, const void* src, size_t src_pitch,
                            size_t row_bytes, size_t rows, void* stream) noexcept {
  return check(cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, row_bytes, rows, cudaMemcpyHostToDevice,
                                 static_cast<cudaStream_t>(stream)),
               "cudaMemcpy2DAsync (frame upload)");
}

Status copy_to_host(void* dst, const void* src, size_t bytes) noexcept {
  DeviceGuard on(pointer_device(src));  // the legacy stream of the memory's own device
  if (!on.status().ok()) return on.status();
  return check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy (device to host)");
}

Status copy_to_host_async(void* dst, const void* src, size_t bytes, void* stream) noexcept {
  return check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, static_cast<cudaStream_t>(stream)),
               "cudaMemcpyAsync (device to host)");
}

Status copy_to_device(void* dst, const void* src, size_t bytes) noexcept {
  // A pageable cudaMemcpy may return before its DMA ends: wait, so work on any stream sees the data.
  Status s = check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy (host to device)");
  return s.ok() ? check(cudaStreamSynchronize(nullptr), "cudaStreamSynchronize") : s;
}

Status copy_to_device_async(void* dst, const void* src, size_t bytes, void* stream) noexcept {
  return check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, static_cast<cudaStream_t>(stream)),
               "cudaMemcpyAsync (host to device)");
}

Status event_create(void** event) noexcept {
  cudaEvent_t e = nullptr;
  Status s = check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate");
  *event = e;
  return s;
}

void event_destroy(void* event) noexcept {
  if (event) cudaEventDestroy(static_cast<cudaEvent_t>(event));
}

Status event_record(void* event, void* stream) noexcept {
  return check(cudaEventRecord(static_cast<cudaEvent_t>(event), static_cast<cudaStream_t>(stream)),
               "cudaEventRecord");
}

Status check_stream_device(void* stream, int ordinal, const char* what) noexcept {
  int on = -1;
  const cudaError_t err = cudaStreamGetDevice(static_cast<cudaStream_t>(stream), &on);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return Status(StatusCode::kInvalidArgument, std::string("cuda_stream: not a stream CUDA knows (destroyed?): ") +
                                                    cudaGetErrorString(err));
  }
  if (on != ordinal)
    return Status(StatusCode::kInvalidArgument, std::string("cuda_stream: a stream of cuda:") + std::to_string(on) +
                                                    ", but this " + what + " runs on cuda:" + std::to_string(ordinal) +
                                                    "; pass a stream of cuda:" + std::to_string(ordinal));
  return Status::Ok();
}

Status stream_wait_event(void* stream, void* event) noexcept {
  return check(cudaStreamWaitEvent(static_cast<cudaStream_t>(stream), static_cast<cudaEvent_t>(event), 0),
               "cudaStreamWaitEvent");
}

Status event_synchronize(void* event) noexcept {
  return check(cudaEventSynchronize(static_cast<cudaEvent_t>(event)), "cudaEventSynchronize");
}

Status event_query(void* event, bool* done) noexcept {
  const cudaError_t e = cudaEventQuery(static_cast<cudaEvent_t>(event));
  *done = e == cudaSuccess;
  if (e == cudaErrorNotReady) {
    cudaGetLastError();
    return Status::Ok();
  }
  return check(e, "cudaEventQuery");
}

Status stream_create(bool non_blocking, void** stream) noexcept {
  cudaStream_t s = nullptr;
  Status st = check(cudaStreamCreateWithFlags(&s, non_blocking ? cudaStreamNonBlocking : cudaStreamDefault),
                    "cudaStreamCreateWithFlags");
  *stream = s;
  return st;
}

Status stream_destroy(void* stream) noexcept {
  return check(cudaStreamDestroy(static_cast<cudaStream_t>(stream)), "cudaStreamDestroy");
}

Status stream_synchronize(void* stream) noexcept {
  return check(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)), "cudaStreamSynchronize");
}

Status malloc_host(void** ptr, size_t bytes) noexcept {
  return allocation_status(cudaMallocHost(ptr, bytes), "cudaMallocHost", bytes);
}

void free_host(void* ptr) noexcept {
  if (ptr) cudaFreeHost(ptr);
}

}  // namespace arrcoc::cuda
