// The cascade stage's glue: PyClusterCascade (declared in cascade_bindings.h) and its Python
// class ClusterCascade (bind_cascade).
#include "cascade_bindings.h"

#include <mutex>

namespace arrcoc::pyglue {

// ------------------------------------------------------------------ ClusterCascade

PyClusterCascade::PyClusterCascade(const py::dict& kw) {
  CascadeConfig c;
  c.max_width = kw["max_width"].cast<int>();
  c.max_height = kw["max_height"].cast<int>();
  c.num_seeds = kw["num_seeds"].cast<int>();
  c.iterations = kw["iterations"].cast<int>();
  c.compactness = kw["compactness"].cast<float>();
  c.top_clusters = kw["top_clusters"].cast<int>();
  c.patches_per_cluster = kw["patches_per_cluster"].cast<int>();
  c.motion_weight = kw["motion_weight"].cast<float>();
  c.query_weight = kw["query_weight"].cast<float>();
  c.contrast_weight = kw["contrast_weight"].cast<float>();
  c.device = kw["device"].cast<std::string>() == "cuda" ? Device::kCUDA : Device::kCPU;
  c.cuda_device = kw["cuda_device"].cast<int>();
  c.num_threads = kw["num_threads"].cast<int>();
  std::unique_ptr<ClusterCascade> p;
  throw_if_error(ClusterCascade::create(c, &p));
  cascade_ = std::move(p);
}

py::dict PyClusterCascade::run(PyTextureBuilder& builder, uintptr_t stream) {
  CascadeView v;
  Status s;
  {
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> lock(builder.mutex());
    s = cascade_->run(builder.last_texture(), &v, reinterpret_cast<void*>(stream));
  }
  throw_if_error(s);
  last_ = v;
  py::dict d;
  d["num_clusters"] = v.num_clusters;
  d["grid"] = py::make_tuple(v.grid_x, v.grid_y);
  d["level2"] = py::make_tuple(v.level2_width, v.level2_height);
  d["patch_grid"] = py::make_tuple(v.patch_grid_width, v.patch_grid_height);
  d["labels"] = reinterpret_cast<uintptr_t>(v.labels);
  d["cluster_scores"] = reinterpret_cast<uintptr_t>(v.cluster_scores);
  d["cluster_contrast"] = reinterpret_cast<uintptr_t>(v.cluster_contrast);
  d["patch_contrast"] = reinterpret_cast<uintptr_t>(v.patch_contrast);
  d["kept_clusters"] = reinterpret_cast<uintptr_t>(v.kept_clusters);
  d["candidate_patch"] = reinterpret_cast<uintptr_t>(v.candidate_patch);
  d["capacity"] = v.capacity;
  return d;
}

py::array PyClusterCascade::fetch(uintptr_t ptr, py::ssize_t count, const std::string& dtype) {
  if (cascade_->config().device == Device::kCUDA) {
    Status s;
    {
      py::gil_scoped_release nogil;
      s = cascade_->synchronize();
    }
    throw_if_error(s);
  }
  return host_copy(ptr, count, dtype, cascade_->config().device);
}

// ------------------------------------------------------------------ Python class

void bind_cascade(py::module_& m) {
  py::class_<PyClusterCascade>(m, "ClusterCascade")
      .def(py::init<const py::dict&>())
      .def("run", &PyClusterCascade::run)
      .def("fetch", &PyClusterCascade::fetch);
}

}  // namespace arrcoc::pyglue
