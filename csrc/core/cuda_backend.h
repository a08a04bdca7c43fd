// The CUDA backend as the dispatcher sees it: plain C++ declarations, no CUDA headers.
// Implemented in csrc/cuda/ when CUDA is built, and by csrc/core/cuda_unavailable.cpp
// (every call answers "not built with CUDA") when it is not.
#pragma once

#include <cstddef>
#include <string>

#include "arrcoc/status.h"

namespace arrcoc {
struct TextureParams;
struct CascadeParams;
struct AllocateParams;
struct SemanticParams;
struct LayoutParams;
namespace cuda {

bool compiled() noexcept;
int device_count() noexcept;  // any CUDA error counts as 0 devices
std::string device_name(int ordinal) noexcept;

Status set_device(int ordinal) noexcept;
// The calling host thread's current device (0 when CUDA is absent).
int current_device() noexcept;

// Makes `ordinal` current for its scope and gives the caller back its own device afterwards:
// CUDA's current device is per host thread, and calling into arrcoc must not change the
// caller's (torch's included). A negative ordinal (a CPU operator) does nothing.
class DeviceGuard {
 public:
  explicit DeviceGuard(int ordinal) noexcept;
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;
  const Status& status() const noexcept { return status_; }

 private:
  int previous_ = -1;
  Status status_;
};

// Device ordinal of device memory, or -1 for host memory (pageable or pinned) and unknown pointers.
int pointer_device(const void* ptr) noexcept;
// Device ordinal of memory only a device can read (cudaMalloc'd: not managed, not host), else -1.
int device_only_memory(const void* ptr) noexcept;
// True for page-locked host memory (cudaMallocHost / cudaHostRegister): copies from it are truly
// asynchronous, so the memory must outlive them.
bool is_pinned_host(const void* ptr) noexcept;
Status malloc_device(void** ptr, size_t bytes) noexcept;
void free_device(void* ptr) noexcept;
Status memset_async(void* ptr, int value, size_t bytes, void* stream) noexcept;
// Row-by-row host -> device copy of a plane (cudaMemcpy2DAsync).
Status copy_plane_to_device(void* dst, size_t dst_pitch, const void* src, size_t src_pitch,
                            size_t row_bytes, size_t rows, void* stream) noexcept;
// Blocking device -> host copy (waits for all work queued before it on the legacy stream).
Status copy_to_host(void* dst, const void* src, size_t bytes) noexcept;
// Device -> host copy queued on `stream`; into page-locked `dst` it returns at once (wait on an
// event recorded after it), into pageable memory only once complete.
Status copy_to_host_async(void* dst, const void* src, size_t bytes, void* stream) noexcept;
// Blocking host -> device copy (at creation only: nothing is queued yet).
Status copy_to_device(void* dst, const void* src, size_t bytes) noexcept;
// Host -> device copy queued on `stream`, ordered with the kernels there. `src` must be pageable
// (CUDA stages it before returning, so it may be reused at once).
Status copy_to_device_async(void* dst, const void* src, size_t bytes, void* stream) noexcept;
Status event_create(void** event) noexcept;
void event_destroy(void* event) noexcept;
Status event_record(void* event, void* stream) noexcept;
Status stream_wait_event(void* stream, void* event) noexcept;
// kInvalidArgument when `stream` is a stream of another device than `ordinal` (a caller's stream:
// CUDA itself answers with a bare invalid-value error at the first launch or copy), or one CUDA
// does not know (destroyed); `what` names the object in the message.
Status check_stream_device(void* stream, int ordinal, const char* what) noexcept;
Status event_synchronize(void* event) noexcept;
// *done = whether all work before the event's last record has completed.
Status event_query(void* event, bool* done) noexcept;

// Streams and page-locked host memory for hosts without CUDA headers (arrcoc/runtime.h).
Status stream_create(bool non_blocking, void** stream) noexcept;
Status stream_destroy(void* stream) noexcept;
Status stream_synchronize(void* stream) noexcept;
Status malloc_host(void** ptr, size_t bytes) noexcept;
void free_host(void* ptr) noexcept;
// Whether stages run as replayed CUDA graphs (csrc/cuda/graph_cache.h).
void set_graphs_enabled(bool enabled) noexcept;
bool graphs_enabled() noexcept;

// Converts `n` float32 values (device memory) into a texture plane of `dtype` on `stream`.
Status store_plane(const float* src, void* dst, int64_t n, int dtype, void* stream) noexcept;

// Queues every pass of the texture stage on `stream`. All pointers in `p` are device memory.
Status build_texture(const TextureParams& p, void* stream) noexcept;

// Queues the cluster-first cascade on `stream`. All pointers in `p` are device memory.
Status run_cascade(const CascadeParams& p, void* stream) noexcept;

// Feature gather of the token pack (see TokenAllocator::gather_features).
Status gather_features(const float* features, int channels, int h, int w, const float* positions,
                       const int32_t* levels, int tokens, int width, int height, float* out, void* stream) noexcept;

// The semantic stage (see SemanticEncoder).
Status encode_semantic(const SemanticParams& p, void* stream) noexcept;
Status write_semantic_channels(const SemanticParams& p, void* stream) noexcept;
Status match_layout(const LayoutParams& p, void* stream) noexcept;

// Queues stages 3-6 on `stream`. All pointers in `p` are device memory.
Status run_allocation(const AllocateParams& p, void* stream) noexcept;

}  // namespace cuda
}  // namespace arrcoc
