// PyTextureBuilder, the glue object behind arrcoc_rt._arrcoc.TextureBuilder. Declared here
// because the later stages (cascade, allocate, semantic) read the builder's last texture under
// its mutex; defined and registered in texture_bindings.cpp.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "bind_common.h"

namespace arrcoc::pyglue {

// ------------------------------------------------------------------ TextureBuilder

class PyTextureBuilder {
 public:
  PyTextureBuilder(int max_width, int max_height, const std::string& dtype, const std::string& device,
                   int cuda_device, int num_threads, float fixation_x, float fixation_y,
                   const std::string& planes);

  py::dict build(std::vector<uintptr_t> planes, std::vector<int64_t> strides, int width, int height, int format,
                 int device, int device_id, uintptr_t stream);

  // A zero-copy view of `shape` elements at element `offset` of the texture buffer.
  py::object view(py::object self, uintptr_t data, int64_t offset, std::vector<int64_t> shape);

  void reset();
  const TextureView& last_texture() const { return last_; }
  std::mutex& mutex() { return mutex_; }
  void set_fixation(float x, float y);
  void set_patch_channel(int channel, py::array_t<float, py::array::c_style | py::array::forcecast> values);
  void poison_output();
  void synchronize();
  bool query();  // whether the last build has finished (never blocks)
  void record_use(uintptr_t stream);  // a later stage used the texture on `stream`

 private:
  std::shared_ptr<TextureBuilder> builder_;
  std::mutex mutex_;
  TextureView last_;
};

}  // namespace arrcoc::pyglue
