// Device or host memory owned by one operator, allocated at creation and freed with it (internal).
#pragma once

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "arrcoc/frame.h"
#include "arrcoc/status.h"
#include "cuda_backend.h"

namespace arrcoc {

// Allocations on one device (64-byte aligned on the host), freed together.
class Arena {
 public:
  explicit Arena(Device d) : device_(d) {}
  ~Arena() {
    for (void* p : blocks_) device_ == Device::kCPU ? std::free(p) : cuda::free_device(p);
  }
  Status alloc(size_t bytes, void** out) {
    bytes = std::max<size_t>(64, (bytes + 63) / 64 * 64);
    void* p = nullptr;
    if (device_ == Device::kCPU) {
      p = std::aligned_alloc(64, bytes);
      if (!p) return Status(StatusCode::kOutOfMemory, "host allocation of " + std::to_string(bytes) + " bytes failed");
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

// An operator about to run on `device`: Ok for the CPU; for CUDA, the device must be compiled in,
// present, and current.
inline Status prepare_device(Device device, int ordinal) {
  if (device == Device::kCPU) return Status::Ok();
  if (!cuda::compiled()) return cuda::set_device(0);  // answers "not built with CUDA"
  return cuda::set_device(ordinal);
}

}  // namespace arrcoc
