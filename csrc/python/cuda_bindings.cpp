// The CUDA utilities of arrcoc/runtime.h for python/arrcoc_rt/cuda.py: current device, streams,
// device buffers (wrapped as DeviceArray) and page-locked host buffers (wrapped as NumPy).
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "bind_common.h"
#include "device_array.h"

namespace arrcoc::pyglue {
namespace {

// Device memory owned by Python: freed when the last DeviceArray over it goes.
struct DeviceBuffer {
  void* ptr = nullptr;
  ~DeviceBuffer() { cuda_free(ptr); }
};

}  // namespace

void bind_cuda(py::module_& m) {
  m.def("cuda_emulated", &cuda_emulated);
  m.def("cuda_current_device", &cuda_current_device);
  m.def("cuda_set_graphs", &cuda_set_graphs);
  m.def("cuda_graphs", &cuda_graphs);
  m.def("cuda_set_device", [](int ordinal) { throw_if_error(cuda_set_device(ordinal)); });
  m.def("cuda_pointer_device", [](uintptr_t ptr) { return cuda_pointer_device(reinterpret_cast<const void*>(ptr)); });

  m.def("cuda_stream_create", [](int ordinal, bool non_blocking) {
    void* s = nullptr;
    throw_if_error(cuda_stream_create(ordinal, non_blocking, &s));
    return reinterpret_cast<uintptr_t>(s);
  });
  m.def("cuda_stream_destroy", [](uintptr_t s) { throw_if_error(cuda_stream_destroy(reinterpret_cast<void*>(s))); });
  m.def(
      "cuda_stream_synchronize",
      [](uintptr_t s, int ordinal) {
        Status st;
        {
          py::gil_scoped_release nogil;
          st = cuda_stream_synchronize(reinterpret_cast<void*>(s), ordinal);
        }
        throw_if_error(st);
      },
      py::arg("stream"), py::arg("device") = -1);

  py::class_<DeviceBuffer>(m, "_DeviceBuffer");
  // A C-contiguous host array copied to device `ordinal` (complete when this returns).
  m.def(
      "cuda_to_device",
      [](py::array host, int ordinal, uintptr_t stream) {
        const std::string dtype = py::str(host.dtype()).cast<std::string>();
        if (dtype != "uint8" && dtype != "float32" && dtype != "float16" && dtype != "int32")
          throw py::type_error("to_device: dtype " + dtype + " is not supported; expected uint8, float16, float32 or int32");
        if (!(host.flags() & py::array::c_style))
          throw py::value_error("to_device: the array must be C-contiguous (np.ascontiguousarray)");
        auto buf = std::make_unique<DeviceBuffer>();
        const size_t bytes = static_cast<size_t>(host.nbytes());
        throw_if_error(cuda_malloc(ordinal, bytes, &buf->ptr));
        Status s;
        {
          py::gil_scoped_release nogil;
          s = cuda_copy_to_device(buf->ptr, host.data(), bytes, reinterpret_cast<void*>(stream));
          if (s.ok()) s = cuda_stream_synchronize(reinterpret_cast<void*>(stream), ordinal);
        }
        throw_if_error(s);
        const uintptr_t ptr = reinterpret_cast<uintptr_t>(buf->ptr);
        std::vector<int64_t> shape(host.shape(), host.shape() + host.ndim());
        py::object owner = py::cast(std::move(buf));
        return DeviceArray(ptr, shape, dtype, Device::kCUDA, ordinal, owner, nullptr, /*read_only=*/false);
      },
      py::arg("host"), py::arg("device"), py::arg("stream"));

  // Host array -> existing device memory at `dst`, complete on return (legacy default stream
  // when stream is 0). For tests that play another user of the same memory.
  m.def(
      "cuda_upload",
      [](uintptr_t dst, py::array host, uintptr_t stream) {
        if (!(host.flags() & py::array::c_style)) throw py::value_error("cuda_upload: the array must be C-contiguous");
        Status s;
        {
          py::gil_scoped_release nogil;
          s = cuda_copy_to_device(reinterpret_cast<void*>(dst), host.data(), static_cast<size_t>(host.nbytes()),
                                  reinterpret_cast<void*>(stream));
          if (s.ok())
            s = cuda_stream_synchronize(reinterpret_cast<void*>(stream), cuda_pointer_device(reinterpret_cast<void*>(dst)));
        }
        throw_if_error(s);
      },
      py::arg("dst"), py::arg("host"), py::arg("stream"));

  // `nbytes` of page-locked host memory as a writable uint8 NumPy array (freed with it).
  m.def("cuda_pinned_empty", [](size_t nbytes) {
    void* p = nullptr;
    throw_if_error(cuda_malloc_host(nbytes, &p));
    py::capsule owner(p, [](void* q) { cuda_free_host(q); });
    return py::array(py::dtype("uint8"), {static_cast<py::ssize_t>(nbytes)}, {static_cast<py::ssize_t>(1)},
                     static_cast<uint8_t*>(p), owner);
  });
}

}  // namespace arrcoc::pyglue
