// The semantic stage's glue: PySemanticEncoder and its Python class SemanticEncoder
// (bind_semantic), plus the module attribute BUILTIN_DESCRIPTOR_DIMS.
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "bind_common.h"
#include "texture_bindings.h"

namespace arrcoc::pyglue {

namespace {

// ------------------------------------------------------------------ SemanticEncoder

class PySemanticEncoder {
 public:
  PySemanticEncoder(int max_width, int max_height, const std::string& device, int cuda_device, int num_threads,
                    int max_dims) {
    SemanticConfig c;
    c.max_width = max_width;
    c.max_height = max_height;
    c.max_dims = max_dims;
    c.device = device == "cuda" ? Device::kCUDA : Device::kCPU;
    c.cuda_device = cuda_device;
    c.num_threads = num_threads;
    std::unique_ptr<SemanticEncoder> e;
    throw_if_error(SemanticEncoder::create(c, &e));
    enc_ = std::move(e);
    device_ = c.device;
  }

  void encode(PyTextureBuilder& builder, bool carry, uintptr_t stream) {
    Status s;
    {
      py::gil_scoped_release nogil;
      std::lock_guard<std::mutex> lock(builder.mutex());
      s = enc_->encode(builder.last_texture(), carry, &features_, reinterpret_cast<void*>(stream));
      tex_ = builder.last_texture();
      dims_ = kBuiltinDescriptorDims;
    }
    throw_if_error(s);
  }

  // Host copy of the last descriptors: [32, h4, w4].
  py::array features() {
    if (!features_) throw py::value_error("no descriptors yet: call encode first");
    if (device_ == Device::kCUDA) {  // encode ran on the caller's stream
      Status s;
      {
        py::gil_scoped_release nogil;
        s = enc_->synchronize();
      }
      throw_if_error(s);
    }
    const LevelLayout& L = tex_.levels[kPatchLevel];
    py::array out = host_copy(reinterpret_cast<uintptr_t>(features_),
                              static_cast<py::ssize_t>(kBuiltinDescriptorDims) * L.width * L.height, "float32", device_);
    return out.attr("reshape")(kBuiltinDescriptorDims, L.height, L.width);
  }

  // External features [dims, h4, w4] (host) replace the built-in descriptors for write().
  void set_features(PyTextureBuilder& builder, py::array_t<float, py::array::c_style | py::array::forcecast> f,
                    uintptr_t stream) {
    const LevelLayout& L = builder.last_texture().levels[kPatchLevel];
    if (f.ndim() != 3 || f.shape(1) != L.height || f.shape(2) != L.width)
      throw py::value_error("features: expected [dims, " + std::to_string(L.height) + ", " + std::to_string(L.width) +
                            "] (the patch grid of the last frame)");
    throw_if_error(enc_->upload_features(builder.last_texture(), f.data(), static_cast<int>(f.shape(0)), &features_,
                                         reinterpret_cast<void*>(stream)));
    dims_ = static_cast<int>(f.shape(0));
  }

  // Exemplar layout templates: a list of (descriptors [32, h, w] float32, cell_px); [] removes them.
  void set_layout(const py::list& templates) {
    using F = py::array_t<float, py::array::c_style | py::array::forcecast>;
    std::vector<F> keep;
    std::vector<LayoutTemplate> t;
    for (const py::handle& item : templates) {
      auto pair = item.cast<py::tuple>();
      if (pair.size() != 2) throw py::type_error("layout: expected (descriptors, cell_px) pairs");
      F d = pair[0].cast<F>();
      if (d.ndim() != 3 || d.shape(0) != kBuiltinDescriptorDims)
        throw py::value_error("layout: descriptors must be [32, h, w]");
      LayoutTemplate lt;
      lt.descriptors = d.data();
      lt.height = static_cast<int32_t>(d.shape(1));
      lt.width = static_cast<int32_t>(d.shape(2));
      lt.cell_px = pair[1].cast<int>();
      keep.push_back(std::move(d));
      t.push_back(lt);
    }
    throw_if_error(enc_->set_layout(t.data(), static_cast<int>(t.size())));
  }

  // Host copy of the built-in descriptors of the last texture's cells of `cell_px`: [32, hc, wc].
  py::array encode_cells(PyTextureBuilder& builder, int cell_px, uintptr_t stream) {
    const float* cells = nullptr;
    TextureView tex;
    Status s;
    {
      py::gil_scoped_release nogil;
      std::lock_guard<std::mutex> lock(builder.mutex());
      tex = builder.last_texture();
      s = enc_->encode_cells(tex, cell_px, &cells, reinterpret_cast<void*>(stream));
      if (s.ok() && device_ == Device::kCUDA) s = enc_->synchronize();
    }
    throw_if_error(s);
    const py::ssize_t hc = (tex.height + cell_px - 1) / cell_px, wc = (tex.width + cell_px - 1) / cell_px;
    // The cell maps hold |d|^2 after the 32 dims; copy the descriptors only.
    py::array out = host_copy(reinterpret_cast<uintptr_t>(cells), kBuiltinDescriptorDims * hc * wc, "float32", device_);
    return out.attr("reshape")(kBuiltinDescriptorDims, hc, wc);
  }

  void write(PyTextureBuilder& builder, py::object query, py::object mean, py::object components, uintptr_t stream) {
    using F = py::array_t<float, py::array::c_style | py::array::forcecast>;
    F q, m, c;
    if (!query.is_none()) {
      q = query.cast<F>();
      if (q.size() == 0 || q.size() % dims_ != 0)
        throw py::value_error("query: expected [K, " + std::to_string(dims_) + "] vectors; got " +
                              std::to_string(q.size()) + " values");
    }
    // The kernels read mean[dims] and components[16, dims] through raw pointers: check the sizes
    // here (a PCA of other features read past both arrays: fuzz/fuzz_pca.py under ASan).
    if (!mean.is_none()) {
      m = mean.cast<F>();
      if (m.size() != dims_)
        throw py::value_error("pca: mean has " + std::to_string(m.size()) + " values; the features have " +
                              std::to_string(dims_) + " dimensions");
    }
    if (!components.is_none()) {
      c = components.cast<F>();
      if (c.size() != static_cast<py::ssize_t>(kSemanticComponents) * dims_)
        throw py::value_error("pca: components has " + std::to_string(c.size()) + " values; expected [" +
                              std::to_string(kSemanticComponents) + ", " + std::to_string(dims_) + "]");
    }
    Status s;
    {
      py::gil_scoped_release nogil;
      std::lock_guard<std::mutex> lock(builder.mutex());
      s = enc_->write_channels(builder.last_texture(), features_, dims_, query.is_none() ? nullptr : q.data(),
                               query.is_none() ? 0 : static_cast<int>(q.size() / dims_),
                               mean.is_none() ? nullptr : m.data(),
                               components.is_none() ? nullptr : c.data(), reinterpret_cast<void*>(stream));
    }
    throw_if_error(s);
  }

 private:
  std::unique_ptr<SemanticEncoder> enc_;
  const float* features_ = nullptr;
  int dims_ = kBuiltinDescriptorDims;
  TextureView tex_;
  Device device_ = Device::kCPU;
};

}  // namespace

// ------------------------------------------------------------------ Python class

void bind_semantic(py::module_& m) {
  py::class_<PySemanticEncoder>(m, "SemanticEncoder")
      .def(py::init<int, int, const std::string&, int, int, int>())
      .def("encode", &PySemanticEncoder::encode)
      .def("set_features", &PySemanticEncoder::set_features)
      .def("features", &PySemanticEncoder::features)
      .def("write", &PySemanticEncoder::write)
      .def("set_layout", &PySemanticEncoder::set_layout)
      .def("encode_cells", &PySemanticEncoder::encode_cells);
  m.attr("BUILTIN_DESCRIPTOR_DIMS") = kBuiltinDescriptorDims;
  m.attr("MAX_LAYOUT_CELLS") = kMaxLayoutCells;
}

}  // namespace arrcoc::pyglue
