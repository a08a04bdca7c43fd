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
namespace cuda {

bool compiled() noexcept;
int device_count() noexcept;  // any CUDA error counts as 0 devices
std::string device_name(int ordinal) noexcept;

Status set_device(int ordinal) noexcept;
Status malloc_device(void** ptr, size_t bytes) noexcept;
void free_device(void* ptr) noexcept;
Status memset_async(void* ptr, int value, size_t bytes, void* stream) noexcept;
// Row-by-row host -> device copy of a plane (cudaMemcpy2DAsync).
Status copy_plane_to_device(void* dst, size_t dst_pitch, const void* src, size_t src_pitch,
                            size_t row_bytes, size_t rows, void* stream) noexcept;
// Blocking device -> host copy (waits for all work queued before it on the legacy stream).
Status copy_to_host(void* dst, const void* src, size_t bytes) noexcept;
// Blocking host -> device copy (used at creation and for weights, not per frame).
Status copy_to_device(void* dst, const void* src, size_t bytes) noexcept;
Status event_create(void** event) noexcept;
void event_destroy(void* event) noexcept;
Status event_record(void* event, void* stream) noexcept;
Status stream_wait_event(void* stream, void* event) noexcept;
Status event_synchronize(void* event) noexcept;

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

// Queues stages 3-6 on `stream`. All pointers in `p` are device memory.
Status run_allocation(const AllocateParams& p, void* stream) noexcept;

}  // namespace cuda
}  // namespace arrcoc
