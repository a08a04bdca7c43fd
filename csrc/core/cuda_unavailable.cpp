// Compiled instead of csrc/cuda/ when the library is built without CUDA: every dispatcher
// entry exists and answers clearly, so callers never need #ifdefs.
#include "cuda_backend.h"

namespace arrcoc::cuda {
namespace {
Status not_built() {
  return Status(StatusCode::kNotBuiltWithCuda,
                "arrcoc was built without CUDA (ARRCOC_CUDA=OFF or no nvcc at build time); "
                "use the CPU device (Device::kCPU; device='cpu' in Python) or rebuild with nvcc available");
}
}  // namespace

bool compiled() noexcept { return false; }
int device_count() noexcept { return 0; }
std::string device_name(int) noexcept { return std::string(); }
Status set_device(int) noexcept { return not_built(); }
Status malloc_device(void**, size_t) noexcept { return not_built(); }
void free_device(void*) noexcept {}
Status memset_async(void*, int, size_t, void*) noexcept { return not_built(); }
Status copy_plane_to_device(void*, size_t, const void*, size_t, size_t, size_t, void*) noexcept {
  return not_built();
}
Status copy_to_host(void*, const void*, size_t) noexcept { return not_built(); }
Status copy_to_host_async(void*, const void*, size_t, void*) noexcept { return not_built(); }
Status event_create(void**) noexcept { return not_built(); }
void event_destroy(void*) noexcept {}
Status event_record(void*, void*) noexcept { return not_built(); }
Status stream_wait_event(void*, void*) noexcept { return not_built(); }
Status event_synchronize(void*) noexcept { return not_built(); }
Status build_texture(const TextureParams&, void*) noexcept { return not_built(); }
Status store_plane(const float*, void*, int64_t, int, void*) noexcept { return not_built(); }
Status run_cascade(const CascadeParams&, void*) noexcept { return not_built(); }
Status run_allocation(const AllocateParams&, void*) noexcept { return not_built(); }
Status encode_semantic(const SemanticParams&, void*) noexcept { return not_built(); }
Status write_semantic_channels(const SemanticParams&, void*) noexcept { return not_built(); }
Status match_layout(const LayoutParams&, void*) noexcept { return not_built(); }
Status gather_features(const float*, int, int, int, const float*, const int32_t*, int, int, int, float*,
                       void*) noexcept {
  return not_built();
}
Status copy_to_device(void*, const void*, size_t) noexcept { return not_built(); }
Status copy_to_device_async(void*, const void*, size_t, void*) noexcept { return not_built(); }
int current_device() noexcept { return -1; }
DeviceGuard::DeviceGuard(int ordinal) noexcept {
  if (ordinal >= 0) status_ = not_built();
}
DeviceGuard::~DeviceGuard() = default;
int pointer_device(const void*) noexcept { return -1; }
int device_only_memory(const void*) noexcept { return -1; }
Status check_stream_device(void*, int, const char*) noexcept { return not_built(); }
bool is_pinned_host(const void*) noexcept { return false; }
Status event_query(void*, bool* done) noexcept {
  *done = true;
  return not_built();
}
Status stream_create(bool, void**) noexcept { return not_built(); }
Status stream_destroy(void*) noexcept { return not_built(); }
Status stream_synchronize(void*) noexcept { return not_built(); }
Status malloc_host(void**, size_t) noexcept { return not_built(); }
void free_host(void*) noexcept {}
void set_graphs_enabled(bool) noexcept {}
bool graphs_enabled() noexcept { return false; }

}  // namespace arrcoc::cuda
