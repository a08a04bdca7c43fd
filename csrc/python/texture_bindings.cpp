// The texture stage's glue: PyTextureBuilder (declared in texture_bindings.h) and its Python
// class TextureBuilder (bind_texture). Builds run without the GIL, under the builder's mutex.
#include "texture_bindings.h"

#include "device_array.h"

namespace arrcoc::pyglue {

// ------------------------------------------------------------------ TextureBuilder

PyTextureBuilder::PyTextureBuilder(int max_width, int max_height, const std::string& dtype, const std::string& device,
                                   int cuda_device, int num_threads, float fixation_x, float fixation_y,
                                   const std::string& planes) {
  TextureConfig c;
  c.max_width = max_width;
  c.max_height = max_height;
  c.dtype = dtype == "float32" ? DType::kFloat32 : DType::kFloat16;
  c.device = device == "cuda" ? Device::kCUDA : Device::kCPU;
  c.cuda_device = cuda_device;
  c.num_threads = num_threads;
  c.fixation_x = fixation_x;
  c.fixation_y = fixation_y;
  c.planes = planes == "pipeline" ? TexturePlanes::kPipeline : TexturePlanes::kAll;
  std::unique_ptr<TextureBuilder> b;
  throw_if_error(TextureBuilder::create(c, &b));
  builder_ = std::shared_ptr<TextureBuilder>(std::move(b));
}

py::dict PyTextureBuilder::build(std::vector<uintptr_t> planes, std::vector<int64_t> strides, int width, int height,
                                 int format, int device, int device_id, uintptr_t stream) {
  FrameView f;
  for (size_t k = 0; k < planes.size() && k < 3; ++k) {
    f.planes[k] = reinterpret_cast<const uint8_t*>(planes[k]);
    f.row_stride[k] = k < strides.size() ? strides[k] : 0;
  }
  f.width = width;
  f.height = height;
  f.format = static_cast<PixelFormat>(format);
  f.device = static_cast<Device>(device);
  f.cuda_device = device_id;
  f.cuda_stream = reinterpret_cast<void*>(stream);
  TextureView v;
  Status s;
  {
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> lock(mutex_);
    s = builder_->build(f, &v);
  }
  throw_if_error(s);
  last_ = v;
  py::dict d;
  py::list levels;
  for (int k = 0; k < kNumLevels; ++k)
    levels.append(py::make_tuple(v.levels[k].width, v.levels[k].height, v.levels[k].offset, v.levels[k].num_planes));
  d["width"] = v.width;
  d["height"] = v.height;
  d["levels"] = levels;
  d["motion_valid"] = v.motion_valid;
  d["frame_index"] = v.frame_index;
  d["level0_kept"] = v.level0_kept;
  d["data"] = reinterpret_cast<uintptr_t>(v.data);
  return d;
}

py::object PyTextureBuilder::view(py::object self, uintptr_t data, int64_t offset, std::vector<int64_t> shape) {
  const TextureConfig& c = builder_->config();
  const int es = dtype_size(c.dtype);
  const uintptr_t ptr = data + static_cast<uintptr_t>(offset) * es;
  if (c.device == Device::kCPU) {
    std::vector<py::ssize_t> st(shape.size(), es);
    for (int i = static_cast<int>(shape.size()) - 2; i >= 0; --i) st[i] = st[i + 1] * shape[i + 1];
    py::dtype dt(c.dtype == DType::kFloat16 ? "float16" : "float32");
    py::array a(dt, std::vector<py::ssize_t>(shape.begin(), shape.end()), st, reinterpret_cast<void*>(ptr), self);
    return std::move(a);
  }
  std::shared_ptr<TextureBuilder> b = builder_;
  return py::cast(DeviceArray(ptr, shape, c.dtype == DType::kFloat16 ? "float16" : "float32", c.device,
                              c.cuda_device, self, [b](void* stream) {
                                return stream ? b->wait_on_stream(stream) : b->synchronize();
                              }));
}

void PyTextureBuilder::reset() {
  std::lock_guard<std::mutex> lock(mutex_);
  builder_->reset();
}

void PyTextureBuilder::set_fixation(float x, float y) {
  std::lock_guard<std::mutex> lock(mutex_);
  throw_if_error(builder_->set_fixation(x, y));
}

void PyTextureBuilder::set_patch_channel(int channel,
                                         py::array_t<float, py::array::c_style | py::array::forcecast> values) {
  std::lock_guard<std::mutex> lock(mutex_);
  const LevelLayout& L = last_.levels[kPatchLevel];
  if (values.ndim() != 2 || values.shape(0) != L.height || values.shape(1) != L.width)
    throw py::value_error("values: expected shape (" + std::to_string(L.height) + ", " + std::to_string(L.width) +
                          ") (the patch grid of the last frame)");
  throw_if_error(builder_->set_patch_channel(channel, values.data()));
}

void PyTextureBuilder::poison_output() {
  std::lock_guard<std::mutex> lock(mutex_);
  throw_if_error(builder_->poison_output());
}

void PyTextureBuilder::synchronize() {
  py::gil_scoped_release nogil;
  throw_if_error(builder_->synchronize());
}

void PyTextureBuilder::record_use(uintptr_t stream) {
  std::lock_guard<std::mutex> lock(mutex_);
  throw_if_error(builder_->record_use(reinterpret_cast<void*>(stream)));
}

bool PyTextureBuilder::query() {
  bool done = true;
  throw_if_error(builder_->query(&done));
  return done;
}

// ------------------------------------------------------------------ Python class

void bind_texture(py::module_& m) {
  py::class_<PyTextureBuilder>(m, "TextureBuilder")
      .def(py::init<int, int, const std::string&, const std::string&, int, int, float, float, const std::string&>(),
           py::arg("max_width"), py::arg("max_height"), py::arg("dtype"), py::arg("device"), py::arg("cuda_device"),
           py::arg("num_threads"), py::arg("fixation_x"), py::arg("fixation_y"), py::arg("planes"))
      .def("build", &PyTextureBuilder::build)
      .def("view", [](py::object self, uintptr_t data, int64_t offset, std::vector<int64_t> shape) {
        return self.cast<PyTextureBuilder&>().view(self, data, offset, std::move(shape));
      })
      .def("reset", &PyTextureBuilder::reset)
      .def("set_fixation", &PyTextureBuilder::set_fixation)
      .def("poison_output", &PyTextureBuilder::poison_output)
      .def("set_patch_channel", &PyTextureBuilder::set_patch_channel)
      .def("synchronize", &PyTextureBuilder::synchronize)
      .def("query", &PyTextureBuilder::query)
      .def("record_use", &PyTextureBuilder::record_use);
}

}  // namespace arrcoc::pyglue
