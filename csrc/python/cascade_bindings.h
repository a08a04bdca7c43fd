// PyClusterCascade, the glue object behind arrcoc_rt._arrcoc.ClusterCascade. Declared here
// because the allocate stage reads the cascade's last view; defined and registered in
// cascade_bindings.cpp.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "bind_common.h"
#include "texture_bindings.h"

namespace arrcoc::pyglue {

// ------------------------------------------------------------------ ClusterCascade

class PyClusterCascade {
 public:
  explicit PyClusterCascade(const py::dict& kw);

  const CascadeView& last_view() const { return last_; }

  // Runs on the texture the builder made last; returns sizes and result pointers.
  py::dict run(PyTextureBuilder& builder, uintptr_t stream);

  py::array fetch(uintptr_t ptr, py::ssize_t count, const std::string& dtype);

 private:
  std::unique_ptr<ClusterCascade> cascade_;
  CascadeView last_;
};

}  // namespace arrcoc::pyglue
