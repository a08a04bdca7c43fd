// PYBIND11_MODULE(_arrcoc): the module-level functions (version, CUDA queries, channel and
// format names, DLPack consumer, test hooks) and the stages' classes, registered in order by the
// bind_* functions of the other files in csrc/python/.
//
// Thin by design: argument checking with user-facing messages lives in python/arrcoc_rt/, the
// glue converts types, releases the GIL around kernels, maps Status to exceptions and speaks
// DLPack (pybind11 has no caster).
#include <cstdint>
#include <string>
#include <vector>

#include "arrcoc/arrcoc.h"
#include "../shared/half.h"
#include "bind_common.h"
#include "device_array.h"

using namespace arrcoc;
using namespace arrcoc::pyglue;

PYBIND11_MODULE(_arrcoc, m) {
  m.doc() = "arrcoc C++/CUDA core (internal; use the arrcoc_rt package)";
  py::register_exception_translator([](std::exception_ptr e) {  // runs with the GIL held
    try {
      if (e) std::rethrow_exception(e);
    } catch (const OutOfMemory& oom) {
      PyErr_SetString(PyExc_MemoryError, oom.what());
    }
  });
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

  bind_device_array(m);
  bind_texture(m);
  bind_cascade(m);
  bind_allocate(m);
  bind_semantic(m);
  bind_cuda(m);
}
