// DeviceArray (the DLPack producer and CUDA array interface over core memory), its Python
// class (bind_device_array) and dlpack_tensor_info (the DLPack consumer). The ABI structs are
// in dlpack_abi.h.
#include "device_array.h"

#include <cstring>

#include "dlpack_abi.h"

namespace arrcoc::pyglue {

namespace {

const auto kLegacyStream = reinterpret_cast<void*>(1);  // cudaStreamLegacy, as DLPack's stream=1

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

}  // namespace

DeviceArray::DeviceArray(uintptr_t ptr, std::vector<int64_t> shape, std::string dtype, Device device, int device_id,
                         py::object owner, std::function<Status(void*)> sync, bool read_only)
    : ptr_(ptr), shape_(std::move(shape)), dtype_(dtype), device_(device), device_id_(device_id),
      owner_(std::move(owner)), sync_(std::move(sync)), read_only_(read_only) {
  strides_.assign(shape_.size(), 1);
  for (int i = static_cast<int>(shape_.size()) - 2; i >= 0; --i) strides_[i] = strides_[i + 1] * shape_[i + 1];
}

py::tuple DeviceArray::dlpack_device() const {
  return py::make_tuple(static_cast<int>(device_ == Device::kCUDA ? dlpack::kDLCUDA : dlpack::kDLCPU), device_id_);
}

namespace {

// A consumer's stream argument (the DLPack protocol): None or 1 = legacy default, 2 = per-thread
// default, -1 = no synchronization, 0 read as 1, else a handle below 2^64. Nothing else reaches CUDA.
intptr_t dlpack_stream(const py::object& stream) {
  if (stream.is_none()) return 1;
  if (!PyLong_Check(stream.ptr()) || PyBool_Check(stream.ptr()))
    throw py::type_error("__dlpack__: stream must be None or an int (a CUDA stream handle); got " +
                         std::string(py::str(py::type::of(stream).attr("__name__"))));
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(stream.ptr(), &overflow);
  if (overflow == 0 && v >= -1) return v == 0 ? 1 : static_cast<intptr_t>(v);
  if (overflow > 0) {
    const unsigned long long u = PyLong_AsUnsignedLongLong(stream.ptr());
    if (!PyErr_Occurred()) return static_cast<intptr_t>(u);
    PyErr_Clear();
  }
  throw py::value_error("__dlpack__: stream " + std::string(py::str(stream)) +
                        " is not a CUDA stream handle; expected None, -1, 1, 2 or a handle below 2**64");
}

}  // namespace

py::object DeviceArray::dlpack(py::object stream, py::object max_version, py::object dl_device, py::object copy) {
  if (!copy.is_none() && copy.cast<bool>())
    throw py::buffer_error("arrcoc DeviceArray exports zero-copy only (copy=True is not supported)");
  if (!dl_device.is_none()) {
    if (!py::isinstance<py::tuple>(dl_device) || py::len(dl_device) != 2)
      throw py::type_error("__dlpack__: dl_device must be None or a (device_type, device_id) tuple");
    auto t = dl_device.cast<py::tuple>();
    if (t[0].cast<int>() != (device_ == Device::kCUDA ? dlpack::kDLCUDA : dlpack::kDLCPU) ||
        t[1].cast<int>() != device_id_)
      throw py::buffer_error("arrcoc DeviceArray cannot export to another device (it is on device " +
                             std::to_string(device_id_) + "; zero-copy only)");
  }
  const intptr_t s = dlpack_stream(stream);
  if (device_ == Device::kCUDA && sync_ && s != -1) throw_if_error(sync_(reinterpret_cast<void*>(s)));
  bool versioned = false;
  if (!max_version.is_none()) {
    if (!py::isinstance<py::tuple>(max_version) || py::len(max_version) != 2)
      throw py::type_error("__dlpack__: max_version must be None or a (major, minor) tuple of ints");
    versioned = max_version.cast<py::tuple>()[0].cast<int>() >= 1;
  }

  auto* ctx = new ExportCtx{shape_, strides_, owner_.ptr()};
  Py_INCREF(ctx->owner);
  dlpack::Tensor t{};
  t.data = reinterpret_cast<void*>(ptr_);
  t.device = {device_ == Device::kCUDA ? dlpack::kDLCUDA : dlpack::kDLCPU, device_id_};
  t.ndim = static_cast<int32_t>(shape_.size());
  t.dtype = {dtype_ == "int32"   ? dlpack::kDLInt
             : dtype_ == "uint8" ? dlpack::kDLUInt
                                 : dlpack::kDLFloat,
             static_cast<uint8_t>(itemsize() * 8), 1};
  t.shape = ctx->shape.data();
  t.strides = ctx->strides.data();
  t.byte_offset = 0;
  if (versioned) {
    auto* m = new dlpack::ManagedTensorVersioned{};
    m->version = {1, 0};
    m->manager_ctx = ctx;
    m->deleter = &delete_managed<dlpack::ManagedTensorVersioned>;
    m->flags = read_only_ ? dlpack::kFlagReadOnly : 0;
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

py::dict DeviceArray::cuda_array_interface() const {
  if (device_ != Device::kCUDA) throw py::attribute_error("__cuda_array_interface__ is only defined for CUDA memory");
  // Consumers honour this by synchronizing on the host; synchronize here so the data is ready.
  if (sync_) throw_if_error(wait_on_host());
  py::dict d;
  py::list shape;
  for (auto s : shape_) shape.append(s);
  d["shape"] = py::tuple(shape);
  d["typestr"] = dtype_ == "float16" ? "<f2" : dtype_ == "int32" ? "<i4" : dtype_ == "uint8" ? "|u1" : "<f4";
  d["data"] = py::make_tuple(ptr_, read_only_);
  d["strides"] = py::none();
  d["version"] = 3;
  d["stream"] = py::none();
  return d;
}

py::array DeviceArray::numpy() const {
  py::dtype dt(dtype_);
  py::array out(dt, std::vector<py::ssize_t>(shape_.begin(), shape_.end()));
  if (device_ == Device::kCPU) {
    std::memcpy(out.mutable_data(), reinterpret_cast<const void*>(ptr_), out.nbytes());
    return out;
  }
  void* dst = out.mutable_data();
  const size_t bytes = static_cast<size_t>(out.nbytes());
  Status s;
  {
    py::gil_scoped_release nogil;  // other Python threads run while the GPU finishes and copies
    // The producer's work is ordered before the copy on the legacy stream, whose blocking copy is
    // then the only host wait.
    s = sync_ ? sync_(kLegacyStream) : Status::Ok();
    if (s.ok()) s = cuda_copy_to_host(dst, reinterpret_cast<const void*>(ptr_), bytes);
  }
  throw_if_error(s);
  return out;
}

Status DeviceArray::wait_on_host() const {
  py::gil_scoped_release nogil;
  return sync_(nullptr);
}

py::tuple DeviceArray::shape() const {
  py::list l;
  for (auto s : shape_) l.append(s);
  return py::tuple(l);
}

// ------------------------------------------------------------------ DLPack consumer

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
  // As integers: data + byte_offset need not be a pointer into one object (a handle plus an
  // offset), and pointer arithmetic that wraps is undefined (UBSan, fuzz/fuzz_importers.py).
  d["data"] = static_cast<uintptr_t>(reinterpret_cast<uintptr_t>(t->data) + t->byte_offset);
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

// ------------------------------------------------------------------ Python class

void bind_device_array(py::module_& m) {
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
}

}  // namespace arrcoc::pyglue
