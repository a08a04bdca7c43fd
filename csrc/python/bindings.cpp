// pybind11 glue: the module arrcoc_rt._arrcoc. Thin by design: argument checking with
// user-facing messages lives in python/arrcoc_rt/, this file converts types, releases the
// GIL around kernels, maps Status to exceptions and speaks DLPack (pybind11 has no caster).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "arrcoc/arrcoc.h"
#include "../shared/half.h"
#include "dlpack_abi.h"

namespace py = pybind11;
using namespace arrcoc;

namespace {

// Status -> Python exception. Bad input of any kind is a ValueError (the Python layer has
// already raised TypeError for wrong types); failures of the machine are RuntimeError.
void throw_if_error(const Status& s) {
  if (s.ok()) return;
  switch (s.code()) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange:
    case StatusCode::kNotBuiltWithCuda:
    case StatusCode::kNoCudaDevice:
      throw py::value_error(s.message());
    case StatusCode::kOutOfMemory:
      throw std::bad_alloc();
    default:
      throw std::runtime_error(std::string(status_code_name(s.code())) + ": " + s.message());
  }
}

// ------------------------------------------------------------------ DLPack producer

struct ExportCtx {
  std::vector<int64_t> shape, strides;
  PyObject* owner;  // keeps the memory's owner alive
};

template <typename Managed>
void delete_managed(Managed* m) {
  auto* ctx = static_cast<ExportCtx*>(m->manager_ctx);
  // The consumer may call this from any thread, or after the interpreter is gone.
  if (Py_IsInitialized()) {
    PyGILState_STATE st = PyGILState_Ensure();
    Py_XDECREF(ctx->owner);
    PyGILState_Release(st);
  }
  delete ctx;
  delete m;
}

template <typename Managed>
void capsule_destructor(PyObject* cap, const char* name) {
  // Only an unconsumed capsule still owns its tensor (consumers rename it "used_...").
  if (PyCapsule_IsValid(cap, name)) {
    auto* m = static_cast<Managed*>(PyCapsule_GetPointer(cap, name));
    if (m && m->deleter) m->deleter(m);
  }
}

// A strided view of builder memory that any DLPack / CUDA-array-interface consumer can take
// zero-copy (torch.from_dlpack, cupy.from_dlpack, numpy.from_dlpack for CPU memory).
class DeviceArray {
 public:
  // dtype: "float16", "float32" or "int32". `sync` (optional) is what __dlpack__ waits on.
  DeviceArray(uintptr_t ptr, std::vector<int64_t> shape, std::string dtype, Device device, int device_id,
              py::object owner, std::function<Status(void*)> sync)
      : ptr_(ptr), shape_(std::move(shape)), dtype_(dtype), device_(device), device_id_(device_id),
        owner_(std::move(owner)), sync_(std::move(sync)) {
    strides_.assign(shape_.size(), 1);
    for (int i = static_cast<int>(shape_.size()) - 2; i >= 0; --i) strides_[i] = strides_[i + 1] * shape_[i + 1];
  }

  py::tuple dlpack_device() const {
    return py::make_tuple(static_cast<int>(device_ == Device::kCUDA ? dlpack::kDLCUDA : dlpack::kDLCPU), device_id_);
  }

  py::object dlpack(py::object stream, py::object max_version, py::object dl_device, py::object copy) {
    if (!copy.is_none() && copy.cast<bool>())
      throw py::buffer_error("arrcoc DeviceArray exports zero-copy only (copy=True is not supported)");
    if (!dl_device.is_none()) {
      auto t = dl_device.cast<py::tuple>();
      if (t[0].cast<int>() != (device_ == Device::kCUDA ? dlpack::kDLCUDA : dlpack::kDLCPU))
        throw py::buffer_error("arrcoc DeviceArray cannot export to another device");
    }
    if (device_ == Device::kCUDA && sync_) {
      // stream: None/1 = legacy default, 2 = per-thread default, -1 = no sync, else a handle.
      intptr_t s = stream.is_none() ? 1 : stream.cast<intptr_t>();
      if (s == 0) s = 1;
      if (s != -1) throw_if_error(sync_(reinterpret_cast<void*>(s)));
    }
    bool versioned = false;
    if (!max_version.is_none()) versioned = max_version.cast<py::tuple>()[0].cast<int>() >= 1;

    auto* ctx = new ExportCtx{shape_, strides_, owner_.ptr()};
    Py_INCREF(ctx->owner);
    dlpack::Tensor t{};
    t.data = reinterpret_cast<void*>(ptr_);
    t.device = {device_ == Device::kCUDA ? dlpack::kDLCUDA : dlpack::kDLCPU, device_id_};
    t.ndim = static_cast<int32_t>(shape_.size());
    t.dtype = {dtype_ == "int32" ? dlpack::kDLInt : dlpack::kDLFloat, static_cast<uint8_t>(itemsize() * 8), 1};
    t.shape = ctx->shape.data();
    t.strides = ctx->strides.data();
    t.byte_offset = 0;
    if (versioned) {
      auto* m = new dlpack::ManagedTensorVersioned{};
      m->version = {1, 0};
      m->manager_ctx = ctx;
      m->deleter = &delete_managed<dlpack::ManagedTensorVersioned>;
      m->flags = dlpack::kFlagReadOnly;
      m->dl_tensor = t;
      return py::reinterpret_steal<py::object>(PyCapsule_New(m, "dltensor_versioned", [](PyObject* c) {
        capsule_destructor<dlpack::ManagedTensorVersioned>(c, "dltensor_versioned");
      }));
    }
    auto* m = new dlpack::ManagedTensor{};
    m->dl_tensor = t;
    m->manager_ctx = ctx;
    m->deleter = &delete_managed<dlpack::ManagedTensor>;
    return py::reinterpret_steal<py::object>(
        PyCapsule_New(m, "dltensor", [](PyObject* c) { capsule_destructor<dlpack::ManagedTensor>(c, "dltensor"); }));
  }

  py::dict cuda_array_interface() const {
    if (device_ != Device::kCUDA) throw py::attribute_error("__cuda_array_interface__ is only defined for CUDA memory");
    // Consumers honour this by synchronizing on the host; synchronize here so the data is ready.
    if (sync_) throw_if_error(sync_(nullptr));
    py::dict d;
    py::list shape;
    for (auto s : shape_) shape.append(s);
    d["shape"] = py::tuple(shape);
    d["typestr"] = dtype_ == "float16" ? "<f2" : dtype_ == "int32" ? "<i4" : "<f4";
    d["data"] = py::make_tuple(ptr_, true);
    d["strides"] = py::none();
    d["version"] = 3;
    d["stream"] = py::none();
    return d;
  }

  // A host copy as a NumPy array (waits for the builder's last build first).
  py::array numpy() const {
    py::dtype dt(dtype_);
    py::array out(dt, std::vector<py::ssize_t>(shape_.begin(), shape_.end()));
    if (device_ == Device::kCPU) {
      std::memcpy(out.mutable_data(), reinterpret_cast<const void*>(ptr_), out.nbytes());
      return out;
    }
    if (sync_) throw_if_error(sync_(nullptr));
    throw_if_error(cuda_copy_to_host(out.mutable_data(), reinterpret_cast<const void*>(ptr_), out.nbytes()));
    return out;
  }

  py::tuple shape() const {
    py::list l;
    for (auto s : shape_) l.append(s);
    return py::tuple(l);
  }
  std::string dtype() const { return dtype_; }
  int itemsize() const { return dtype_ == "float16" ? 2 : 4; }
  std::string device() const { return device_ == Device::kCUDA ? "cuda:" + std::to_string(device_id_) : "cpu"; }
  uintptr_t data_ptr() const { return ptr_; }

 private:
  uintptr_t ptr_;
  std::vector<int64_t> shape_, strides_;
  std::string dtype_;
  Device device_;
  int device_id_;
  py::object owner_;
  std::function<Status(void*)> sync_;  // stream to wait on (nullptr: block the host)
};

// ------------------------------------------------------------------ DLPack consumer

// Reads a DLPack capsule without consuming it: the producer's capsule destructor frees the
// tensor once the caller drops the capsule (which it keeps alive while we read the memory).
py::dict dlpack_tensor_info(py::capsule cap) {
  const dlpack::Tensor* t = nullptr;
  bool readonly = false;
  PyObject* c = cap.ptr();
  if (PyCapsule_IsValid(c, "dltensor_versioned")) {
    auto* m = static_cast<dlpack::ManagedTensorVersioned*>(PyCapsule_GetPointer(c, "dltensor_versioned"));
    if (m->version.major != 1)
      throw py::value_error("unsupported DLPack major version " + std::to_string(m->version.major) + "; expected 1");
    t = &m->dl_tensor;
    readonly = (m->flags & dlpack::kFlagReadOnly) != 0;
  } else if (PyCapsule_IsValid(c, "dltensor")) {
    t = &static_cast<dlpack::ManagedTensor*>(PyCapsule_GetPointer(c, "dltensor"))->dl_tensor;
  } else {
    throw py::value_error("not a DLPack capsule (expected a 'dltensor' or 'dltensor_versioned' capsule that "
                          "has not been consumed yet)");
  }
  py::dict d;
  d["data"] = reinterpret_cast<uintptr_t>(static_cast<const char*>(t->data) + t->byte_offset);
  d["device_type"] = t->device.device_type;
  d["device_id"] = t->device.device_id;
  py::list shape, strides;
  for (int i = 0; i < t->ndim; ++i) {
    shape.append(t->shape[i]);
    if (t->strides) strides.append(t->strides[i]);
  }
  d["shape"] = py::tuple(shape);
  d["strides"] = t->strides ? py::object(py::tuple(strides)) : py::object(py::none());
  d["dtype"] = py::make_tuple(static_cast<int>(t->dtype.code), static_cast<int>(t->dtype.bits),
                              static_cast<int>(t->dtype.lanes));
  d["readonly"] = readonly;
  return d;
}

// ------------------------------------------------------------------ TextureBuilder

class PyTextureBuilder {
 public:
  PyTextureBuilder(int max_width, int max_height, const std::string& dtype, const std::string& device,
                   int cuda_device, int num_threads, float fixation_x, float fixation_y) {
    TextureConfig c;
    c.max_width = max_width;
    c.max_height = max_height;
    c.dtype = dtype == "float32" ? DType::kFloat32 : DType::kFloat16;
    c.device = device == "cuda" ? Device::kCUDA : Device::kCPU;
    c.cuda_device = cuda_device;
    c.num_threads = num_threads;
    c.fixation_x = fixation_x;
    c.fixation_y = fixation_y;
    std::unique_ptr<TextureBuilder> b;
    throw_if_error(TextureBuilder::create(c, &b));
    builder_ = std::shared_ptr<TextureBuilder>(std::move(b));
  }

  py::dict build(std::vector<uintptr_t> planes, std::vector<int64_t> strides, int width, int height, int format,
                 int device, uintptr_t stream) {
    FrameView f;
    for (size_t k = 0; k < planes.size() && k < 3; ++k) {
      f.planes[k] = reinterpret_cast<const uint8_t*>(planes[k]);
      f.row_stride[k] = k < strides.size() ? strides[k] : 0;
    }
    f.width = width;
    f.height = height;
    f.format = static_cast<PixelFormat>(format);
    f.device = static_cast<Device>(device);
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
    d["data"] = reinterpret_cast<uintptr_t>(v.data);
    return d;
  }

  // A zero-copy view of `shape` elements at element `offset` of the texture buffer.
  py::object view(py::object self, uintptr_t data, int64_t offset, std::vector<int64_t> shape) {
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

  void reset() {
    std::lock_guard<std::mutex> lock(mutex_);
    builder_->reset();
  }
  const TextureView& last_texture() const { return last_; }
  std::mutex& mutex() { return mutex_; }
  void set_fixation(float x, float y) {
    std::lock_guard<std::mutex> lock(mutex_);
    throw_if_error(builder_->set_fixation(x, y));
  }
  void set_patch_channel(int channel, py::array_t<float, py::array::c_style | py::array::forcecast> values) {
    std::lock_guard<std::mutex> lock(mutex_);
    const LevelLayout& L = last_.levels[kPatchLevel];
    if (values.ndim() != 2 || values.shape(0) != L.height || values.shape(1) != L.width)
      throw py::value_error("values: expected shape (" + std::to_string(L.height) + ", " + std::to_string(L.width) +
                            ") (the patch grid of the last frame)");
    throw_if_error(builder_->set_patch_channel(channel, values.data()));
  }
  void poison_output() {
    std::lock_guard<std::mutex> lock(mutex_);
    throw_if_error(builder_->poison_output());
  }
  void synchronize() {
    py::gil_scoped_release nogil;
    throw_if_error(builder_->synchronize());
  }

 private:
  std::shared_ptr<TextureBuilder> builder_;
  std::mutex mutex_;
  TextureView last_;
};

// Host copy of `count` elements of `dtype` at `ptr` (device memory for CUDA; the caller has
// synchronized the producer).
py::array host_copy(uintptr_t ptr, py::ssize_t count, const std::string& dtype, Device device) {
  py::dtype dt(dtype);
  py::array out(dt, std::vector<py::ssize_t>{count});
  const size_t bytes = static_cast<size_t>(count) * dt.itemsize();
  if (device == Device::kCPU)
    std::memcpy(out.mutable_data(), reinterpret_cast<const void*>(ptr), bytes);
  else
    throw_if_error(cuda_copy_to_host(out.mutable_data(), reinterpret_cast<const void*>(ptr), bytes));
  return out;
}

// ------------------------------------------------------------------ ClusterCascade

class PyClusterCascade {
 public:
  explicit PyClusterCascade(const py::dict& kw) {
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
    c.device = kw["device"].cast<std::string>() == "cuda" ? Device::kCUDA : Device::kCPU;
    c.cuda_device = kw["cuda_device"].cast<int>();
    c.num_threads = kw["num_threads"].cast<int>();
    std::unique_ptr<ClusterCascade> p;
    throw_if_error(ClusterCascade::create(c, &p));
    cascade_ = std::move(p);
  }

  const CascadeView& last_view() const { return last_; }

  // Runs on the texture the builder made last; returns sizes and result pointers.
  py::dict run(PyTextureBuilder& builder, uintptr_t stream) {
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
    d["kept_clusters"] = reinterpret_cast<uintptr_t>(v.kept_clusters);
    d["candidate_patch"] = reinterpret_cast<uintptr_t>(v.candidate_patch);
    d["capacity"] = v.capacity;
    return d;
  }

  py::array fetch(uintptr_t ptr, py::ssize_t count, const std::string& dtype) {
    if (cascade_->config().device == Device::kCUDA) throw_if_error(cascade_->synchronize());
    return host_copy(ptr, count, dtype, cascade_->config().device);
  }

 private:
  std::unique_ptr<ClusterCascade> cascade_;
  CascadeView last_;
};

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
    if (device_ == Device::kCUDA) throw_if_error(enc_->synchronize());  // encode ran on the caller's stream
    const LevelLayout& L = tex_.levels[kPatchLevel];
    py::array out = host_copy(reinterpret_cast<uintptr_t>(features_),
                              static_cast<py::ssize_t>(kBuiltinDescriptorDims) * L.width * L.height, "float32", device_);
    return out.attr("reshape")(kBuiltinDescriptorDims, L.height, L.width);
  }

  // External features [dims, h4, w4] (host) replace the built-in descriptors for write().
  void set_features(PyTextureBuilder& builder, py::array_t<float, py::array::c_style | py::array::forcecast> f) {
    const LevelLayout& L = builder.last_texture().levels[kPatchLevel];
    if (f.ndim() != 3 || f.shape(1) != L.height || f.shape(2) != L.width)
      throw py::value_error("features: expected [dims, " + std::to_string(L.height) + ", " + std::to_string(L.width) +
                            "] (the patch grid of the last frame)");
    throw_if_error(enc_->upload_features(builder.last_texture(), f.data(), static_cast<int>(f.shape(0)), &features_));
    dims_ = static_cast<int>(f.shape(0));
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
    if (!mean.is_none()) m = mean.cast<F>();
    if (!components.is_none()) c = components.cast<F>();
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

// ------------------------------------------------------------------ TokenAllocator

using PyBuilderRef = PyTextureBuilder&;
using PyCascadeRef = PyClusterCascade&;

BalanceWeights weights_from_dict(const py::dict& d) {
  BalanceWeights w;
  auto copy = [&](const char* key, float* dst, size_t n) {
    auto a = d[key].cast<py::array_t<float, py::array::c_style | py::array::forcecast>>();
    if (static_cast<size_t>(a.size()) != n)
      throw py::value_error(std::string("weights: ") + key + " has " + std::to_string(a.size()) + " values; expected " +
                            std::to_string(n));
    std::memcpy(dst, a.data(), n * sizeof(float));
  };
  copy("W1", w.W1, 384);
  copy("b1", w.b1, 128);
  copy("ln_gamma", w.ln_gamma, 128);
  copy("ln_beta", w.ln_beta, 128);
  copy("W2", w.W2, 64 * 128);
  copy("b2", w.b2, 64);
  copy("W3", w.W3, 64);
  copy("b3", &w.b3, 1);
  copy("lambda_logits", w.lambda_logits, 3);
  copy("mix", w.mix, 3);
  return w;
}

py::dict weights_to_dict(const BalanceWeights& w) {
  py::dict d;
  auto put = [&](const char* key, const float* src, std::vector<py::ssize_t> shape) {
    py::array_t<float> a(shape);
    std::memcpy(a.mutable_data(), src, a.size() * sizeof(float));
    d[key] = a;
  };
  put("W1", w.W1, {128, 3});
  put("b1", w.b1, {128});
  put("ln_gamma", w.ln_gamma, {128});
  put("ln_beta", w.ln_beta, {128});
  put("W2", w.W2, {64, 128});
  put("b2", w.b2, {64});
  put("W3", w.W3, {1, 64});
  put("b3", &w.b3, {1});
  put("lambda_logits", w.lambda_logits, {3});
  put("mix", w.mix, {3});
  return d;
}

class PyTokenAllocator {
 public:
  explicit PyTokenAllocator(const py::dict& kw) {
    AllocatorConfig c;
    c.max_width = kw["max_width"].cast<int>();
    c.max_height = kw["max_height"].cast<int>();
    c.max_candidates = kw["max_candidates"].cast<int>();
    c.gestalt_x = kw["gestalt_x"].cast<int>();
    c.gestalt_y = kw["gestalt_y"].cast<int>();
    c.gestalt_lod = kw["gestalt_lod"].cast<int>();
    c.saccades = kw["saccades"].cast<int>();
    c.total_budget = kw["total_budget"].cast<int>();
    c.steepness = kw["steepness"].cast<float>();
    c.offset = kw["offset"].cast<float>();
    c.strategy = static_cast<SaccadeStrategy>(kw["strategy"].cast<int>());
    c.seed = kw["seed"].cast<uint32_t>();
    c.decay = kw["decay"].cast<float>();
    c.motion_boost = kw["motion_boost"].cast<float>();
    c.motion_threshold = kw["motion_threshold"].cast<float>();
    c.cut_motion = kw["cut_motion"].cast<float>();
    c.cut_share = kw["cut_share"].cast<float>();
    c.gestalt_overlap = kw["gestalt_overlap"].cast<bool>();
    c.glimpse_size = kw["glimpse_size"].cast<int>();
    c.device = kw["device"].cast<std::string>() == "cuda" ? Device::kCUDA : Device::kCPU;
    c.cuda_device = kw["cuda_device"].cast<int>();
    c.num_threads = kw["num_threads"].cast<int>();
    std::unique_ptr<TokenAllocator> a;
    throw_if_error(TokenAllocator::create(c, &a));
    alloc_ = std::move(a);
  }

  void set_weights(const py::dict& d) { throw_if_error(alloc_->set_weights(weights_from_dict(d))); }

  // copy=true: host copies (safe to keep). copy=false: zero-copy views of the allocator's memory
  // (read-only NumPy on the CPU, DeviceArray on CUDA), valid until the next run.
  py::dict run(py::object self, PyTextureBuilder& builder, PyClusterCascade& cascade, bool has_query,
               uintptr_t stream, bool copy) {
    TokenPack v;
    Status s;
    {
      py::gil_scoped_release nogil;
      std::lock_guard<std::mutex> lock(builder.mutex());
      s = alloc_->run(builder.last_texture(), cascade.last_view(), has_query, &v, reinterpret_cast<void*>(stream));
    }
    throw_if_error(s);
    const Device d = v.device;
    if (d == Device::kCUDA && copy) throw_if_error(alloc_->synchronize());
    const py::ssize_t N = v.num_tokens, P = v.glimpse_size, C = v.candidate_capacity;
    const py::ssize_t h4 = v.patch_grid_height, w4 = v.patch_grid_width;
    TokenAllocator* alloc = alloc_.get();
    const int device_id = alloc_->config().cuda_device;
    auto out = [&](const void* ptr, std::vector<int64_t> shape, const char* dtype) -> py::object {
      py::ssize_t n = 1;
      for (auto e : shape) n *= e;
      if (copy) return host_copy(reinterpret_cast<uintptr_t>(ptr), n, dtype, d).attr("reshape")(py::cast(shape));
      if (d == Device::kCPU) {
        py::array a(py::dtype(dtype), std::vector<py::ssize_t>(shape.begin(), shape.end()), ptr, self);
        py::detail::array_proxy(a.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
        return std::move(a);
      }
      return py::cast(DeviceArray(reinterpret_cast<uintptr_t>(ptr), shape, dtype, d, device_id, self,
                                  [alloc](void*) { return alloc->synchronize(); }));
    };
    py::dict r;
    r["positions"] = out(v.positions, {N, 2}, "float32");
    r["levels"] = out(v.levels, {N}, "int32");
    r["budgets"] = out(v.budgets, {N}, "int32");
    r["kinds"] = out(v.kinds, {N}, "int32");
    r["patches"] = out(v.patches, {N}, "int32");
    r["scores"] = out(v.scores, {N}, "float32");
    r["glimpses"] = out(v.glimpses, {N, 3, P, P}, "float32");
    r["relevance"] = out(v.relevance, {h4, w4}, "float32");
    r["homunculus"] = out(v.homunculus, {h4, w4}, "float32");
    if (d == Device::kCUDA && !copy) throw_if_error(alloc_->synchronize());  // the two flags below
    r["scene_cut"] = host_copy(reinterpret_cast<uintptr_t>(v.scene_cut), 1, "int32", d);
    r["num_saccades"] = host_copy(reinterpret_cast<uintptr_t>(v.num_saccades), 1, "int32", d);
    for (auto [name, ptr] : {std::pair<const char*, const float*>{"info", v.info}, {"salience", v.salience},
                             {"query", v.query}, {"raw", v.raw}, {"balanced", v.balanced},
                             {"candidate_relevance", v.candidate_relevance}})
      r[name] = out(ptr, {C}, "float32");
    r["num_gestalt"] = v.num_gestalt;
    return r;
  }

  void reset() { alloc_->reset(); }

  // Pointers are validated by the Python layer (dtype float32, contiguous, device, shapes).
  void gather(uintptr_t features, int channels, int h, int w, uintptr_t out, uintptr_t stream) {
    Status s;
    {
      py::gil_scoped_release nogil;
      s = alloc_->gather_features(reinterpret_cast<const float*>(features), channels, h, w,
                                  reinterpret_cast<float*>(out), reinterpret_cast<void*>(stream));
    }
    throw_if_error(s);
  }

 private:
  std::unique_ptr<TokenAllocator> alloc_;
};

}  // namespace

PYBIND11_MODULE(_arrcoc, m) {
  m.doc() = "arrcoc C++/CUDA core (internal; use the arrcoc_rt package)";
  m.def("version", [] { return std::string(version()); });
  m.def("built_with_cuda", &built_with_cuda);
  m.def("cuda_device_count", &cuda_device_count);
  m.def("cuda_device_name", &cuda_device_name);
  m.def("channel_name", [](int c) {
    const char* n = channel_name(c);
    if (!n) throw py::index_error("channel index out of range 0..39");
    return std::string(n);
  });
  m.def("channel_base_level", [](int c) { return channel_base_level(c); });
  m.def("plane_index", &TextureView::plane_index);
  m.def("pixel_format_name", [](int f) {
    const char* n = pixel_format_name(static_cast<PixelFormat>(f));
    return n ? std::string(n) : std::string();
  });
  m.attr("NUM_CHANNELS") = kNumChannels;
  m.attr("NUM_LEVELS") = kNumLevels;
  m.def("dlpack_tensor_info", &dlpack_tensor_info);
  m.def(
      "_export_host_memory_for_test",
      [](py::array_t<float, py::array::c_style> a) {
        // Exercises the DLPack producer on host memory (CI has no GPU).
        std::vector<int64_t> shape(a.shape(), a.shape() + a.ndim());
        return DeviceArray(reinterpret_cast<uintptr_t>(a.data()), shape, "float32", Device::kCPU, 0, a, nullptr);
      },
      py::arg("array").noconvert());

  // The host half conversions of csrc/shared/half.h, for exhaustive tests against NumPy.
  m.def(
      "_float_to_half_bits_for_test",
      [](py::array_t<float, py::array::c_style> a) {
        py::array_t<uint16_t> out(a.size());
        for (py::ssize_t i = 0; i < a.size(); ++i) out.mutable_data()[i] = math::float_to_half_bits(a.data()[i]);
        return out;
      },
      py::arg("values").noconvert());
  m.def(
      "_half_bits_to_float_for_test",
      [](py::array_t<uint16_t, py::array::c_style> a) {
        py::array_t<float> out(a.size());
        for (py::ssize_t i = 0; i < a.size(); ++i) out.mutable_data()[i] = math::half_bits_to_float(a.data()[i]);
        return out;
      },
      py::arg("bits").noconvert());

  py::class_<DeviceArray>(m, "DeviceArray", "Zero-copy view of arrcoc device memory (DLPack / CUDA array interface)")
      .def("__dlpack__", &DeviceArray::dlpack, py::kw_only(), py::arg("stream") = py::none(),
           py::arg("max_version") = py::none(), py::arg("dl_device") = py::none(), py::arg("copy") = py::none())
      .def("__dlpack_device__", &DeviceArray::dlpack_device)
      .def_property_readonly("__cuda_array_interface__", &DeviceArray::cuda_array_interface)
      .def("numpy", &DeviceArray::numpy, "Host copy as a NumPy array (synchronizes)")
      .def_property_readonly("shape", &DeviceArray::shape)
      .def_property_readonly("dtype", &DeviceArray::dtype)
      .def_property_readonly("device", &DeviceArray::device)
      .def_property_readonly("data_ptr", &DeviceArray::data_ptr)
      .def("__repr__", [](const DeviceArray& a) {
        return "DeviceArray(shape=" + py::str(a.shape()).cast<std::string>() + ", dtype=" + a.dtype() +
               ", device=" + a.device() + ")";
      });

  py::class_<PyTextureBuilder>(m, "TextureBuilder")
      .def(py::init<int, int, const std::string&, const std::string&, int, int, float, float>(), py::arg("max_width"),
           py::arg("max_height"), py::arg("dtype"), py::arg("device"), py::arg("cuda_device"), py::arg("num_threads"),
           py::arg("fixation_x"), py::arg("fixation_y"))
      .def("build", &PyTextureBuilder::build)
      .def("view", [](py::object self, uintptr_t data, int64_t offset, std::vector<int64_t> shape) {
        return self.cast<PyTextureBuilder&>().view(self, data, offset, std::move(shape));
      })
      .def("reset", &PyTextureBuilder::reset)
      .def("set_fixation", &PyTextureBuilder::set_fixation)
      .def("poison_output", &PyTextureBuilder::poison_output)
      .def("set_patch_channel", &PyTextureBuilder::set_patch_channel)
      .def("synchronize", &PyTextureBuilder::synchronize);

  py::class_<PyClusterCascade>(m, "ClusterCascade")
      .def(py::init<const py::dict&>())
      .def("run", &PyClusterCascade::run)
      .def("fetch", &PyClusterCascade::fetch);

  py::class_<PyTokenAllocator>(m, "TokenAllocator")
      .def(py::init<const py::dict&>())
      .def("set_weights", &PyTokenAllocator::set_weights)
      .def("run", [](py::object self, PyBuilderRef b, PyCascadeRef c, bool q, uintptr_t s, bool copy) {
        return self.cast<PyTokenAllocator&>().run(self, b, c, q, s, copy);
      })
      .def("reset", &PyTokenAllocator::reset)
      .def("gather", &PyTokenAllocator::gather);
  m.def("default_balance_weights", [] { return weights_to_dict(default_balance_weights()); });

  py::class_<PySemanticEncoder>(m, "SemanticEncoder")
      .def(py::init<int, int, const std::string&, int, int, int>())
      .def("encode", &PySemanticEncoder::encode)
      .def("set_features", &PySemanticEncoder::set_features)
      .def("features", &PySemanticEncoder::features)
      .def("write", &PySemanticEncoder::write);
  m.attr("BUILTIN_DESCRIPTOR_DIMS") = kBuiltinDescriptorDims;
}
