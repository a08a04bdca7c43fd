// Version, capability queries and names.
#include "arrcoc/runtime.h"

#include "arrcoc/channels.h"
#include "cuda_backend.h"

#ifndef ARRCOC_VERSION
#define ARRCOC_VERSION "0.0.0"
#endif

namespace arrcoc {

const char* version() noexcept { return ARRCOC_VERSION; }
bool built_with_cuda() noexcept { return cuda::compiled(); }
bool cuda_emulated() noexcept {
#if defined(ARRCOC_CUDA_EMULATED)
  return true;
#else
  return false;
#endif
}
int cuda_device_count() noexcept { return cuda::device_count(); }
std::string cuda_device_name(int ordinal) noexcept {
  try {
    return cuda::device_name(ordinal);
  } catch (...) {
    return std::string();
  }
}

Status cuda_copy_to_host(void* dst, const void* src, size_t bytes) noexcept {
  return cuda::copy_to_host(dst, src, bytes);
}

int cuda_current_device() noexcept { return cuda::current_device(); }
Status cuda_set_device(int ordinal) noexcept { return cuda::set_device(ordinal); }
int cuda_pointer_device(const void* ptr) noexcept { return cuda::pointer_device(ptr); }

Status cuda_malloc(int ordinal, size_t bytes, void** ptr) noexcept {
  if (!ptr) return Status(StatusCode::kInvalidArgument, "ptr (void**) is null");
  if (ordinal < 0) return cuda::set_device(ordinal);  // a device, not "the current one"
  cuda::DeviceGuard on(ordinal);
  return on.status().ok() ? cuda::malloc_device(ptr, bytes) : on.status();
}

void cuda_free(void* ptr) noexcept {
  cuda::DeviceGuard on(cuda::pointer_device(ptr));
  cuda::free_device(ptr);
}

Status cuda_copy_to_device(void* dst, const void* src, size_t bytes, void* stream) noexcept {
  cuda::DeviceGuard on(cuda::pointer_device(dst));
  return on.status().ok() ? cuda::copy_to_device_async(dst, src, bytes, stream) : on.status();
}

Status cuda_stream_create(int ordinal, bool non_blocking, void** stream) noexcept {
  if (!stream) return Status(StatusCode::kInvalidArgument, "stream (void**) is null");
  if (ordinal < 0) return cuda::set_device(ordinal);  // a device, not "the current one"
  cuda::DeviceGuard on(ordinal);
  return on.status().ok() ? cuda::stream_create(non_blocking, stream) : on.status();
}

Status cuda_stream_destroy(void* stream) noexcept { return cuda::stream_destroy(stream); }
Status cuda_stream_synchronize(void* stream, int ordinal) noexcept {
  cuda::DeviceGuard on(ordinal);
  return on.status().ok() ? cuda::stream_synchronize(stream) : on.status();
}
Status cuda_malloc_host(size_t bytes, void** ptr) noexcept {
  if (!ptr) return Status(StatusCode::kInvalidArgument, "ptr (void**) is null");
  return cuda::malloc_host(ptr, bytes);
}
void cuda_free_host(void* ptr) noexcept { cuda::free_host(ptr); }
void cuda_set_graphs(bool enabled) noexcept { cuda::set_graphs_enabled(enabled); }
bool cuda_graphs() noexcept { return cuda::graphs_enabled(); }

const char* status_code_name(StatusCode code) noexcept {
  switch (code) {
    case StatusCode::kOk: return "Ok";
    case StatusCode::kInvalidArgument: return "InvalidArgument";
    case StatusCode::kOutOfRange: return "OutOfRange";
    case StatusCode::kNotBuiltWithCuda: return "NotBuiltWithCuda";
    case StatusCode::kNoCudaDevice: return "NoCudaDevice";
    case StatusCode::kCudaError: return "CudaError";
    case StatusCode::kOutOfMemory: return "OutOfMemory";
    case StatusCode::kInternal: return "Internal";
  }
  return "Unknown";
}

const char* channel_name(int c) noexcept {
  static const char* const kNames[kNumChannels] = {
      "red", "green", "blue", "luminance", "local_contrast", "eccentricity", "grad_x", "grad_y",
      "grad_magnitude", "high_pass", "motion", "saliency", "edge_density", "cluster_id", "entropy",
      "opponent_rg", "opponent_by", "semantic_0", "semantic_1", "semantic_2", "semantic_3", "semantic_4",
      "semantic_5", "semantic_6", "semantic_7", "semantic_8", "semantic_9", "semantic_10", "semantic_11",
      "semantic_12", "semantic_13", "semantic_14", "semantic_15", "query_similarity", "cached_relevance",
      "motion_x", "motion_y", "information_score", "salience_score", "relevance"};
  return (c >= 0 && c < kNumChannels) ? kNames[c] : nullptr;
}

}  // namespace arrcoc
