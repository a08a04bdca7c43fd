// Shared by the pybind11 glue of every stage (csrc/python/*.cpp): the Status -> Python
// exception mapping, host copies of core memory, and the bind_* entry points that module.cpp
// calls in order. Internal to the module arrcoc_rt._arrcoc.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "arrcoc/arrcoc.h"

namespace py = pybind11;

namespace arrcoc::pyglue {

// Status -> Python exception. Bad input of any kind is a ValueError (the Python layer has
// already raised TypeError for wrong types); failures of the machine are RuntimeError.
void throw_if_error(const Status& s);

// Out of host or device memory, with the status's message (pybind11 turns std::bad_alloc into a
// MemoryError without one); module.cpp registers its translation to MemoryError.
struct OutOfMemory : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Host copy of `count` elements of `dtype` at `ptr` (device memory for CUDA; the caller has
// synchronized the producer).
py::array host_copy(uintptr_t ptr, py::ssize_t count, const std::string& dtype, Device device);

// One per stage. module.cpp calls them in this order: pybind11 resolves a class named in a
// signature or default when the function is defined, so types are registered before their users.
void bind_device_array(py::module_& m);  // device_array.cpp
void bind_texture(py::module_& m);       // texture_bindings.cpp
void bind_cascade(py::module_& m);       // cascade_bindings.cpp
void bind_allocate(py::module_& m);      // allocate_bindings.cpp
void bind_semantic(py::module_& m);      // semantic_bindings.cpp
void bind_cuda(py::module_& m);          // cuda_bindings.cpp (the utilities of arrcoc_rt.cuda)

}  // namespace arrcoc::pyglue
