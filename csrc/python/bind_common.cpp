// The helpers declared in bind_common.h: Status -> Python exception, host copies.
#include "bind_common.h"

#include <cstring>
#include <stdexcept>
#include <vector>

namespace arrcoc::pyglue {

void throw_if_error(const Status& s) {
  if (s.ok()) return;
  switch (s.code()) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange:
    case StatusCode::kNotBuiltWithCuda:
    case StatusCode::kNoCudaDevice:
      throw py::value_error(s.message());
    case StatusCode::kOutOfMemory:
      throw OutOfMemory(s.message());
    default:
      throw std::runtime_error(std::string(status_code_name(s.code())) + ": " + s.message());
  }
}

py::array host_copy(uintptr_t ptr, py::ssize_t count, const std::string& dtype, Device device) {
  py::dtype dt(dtype);
  py::array out(dt, std::vector<py::ssize_t>{count});
  const size_t bytes = static_cast<size_t>(count) * dt.itemsize();
  if (device == Device::kCPU) {
    std::memcpy(out.mutable_data(), reinterpret_cast<const void*>(ptr), bytes);
    return out;
  }
  void* dst = out.mutable_data();
  Status s;
  {
    py::gil_scoped_release nogil;  // a blocking copy: other Python threads run meanwhile
    s = cuda_copy_to_host(dst, reinterpret_cast<const void*>(ptr), bytes);
  }
  throw_if_error(s);
  return out;
}

}  // namespace arrcoc::pyglue
