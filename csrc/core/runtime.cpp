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
