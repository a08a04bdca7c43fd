// DeviceArray, the DLPack producer / CUDA-array-interface view of core memory that the stages
// return, and dlpack_tensor_info, the DLPack consumer (pybind11 has no DLPack caster).
// Defined in device_array.cpp, which also registers the Python class (bind_device_array).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "bind_common.h"

namespace arrcoc::pyglue {

// ------------------------------------------------------------------ DLPack producer

// A strided view of builder memory that any DLPack / CUDA-array-interface consumer can take
// zero-copy (torch.from_dlpack, cupy.from_dlpack, numpy.from_dlpack for CPU memory).
class DeviceArray {
 public:
  // dtype: "uint8", "float16", "float32" or "int32". `sync` (optional) is what __dlpack__ waits on.
  // `read_only`: said to consumers (DLPack 1.x flags, the CUDA array interface): true for views of
  // an operator's results, false for the caller's own memory (cuda.to_device).
  DeviceArray(uintptr_t ptr, std::vector<int64_t> shape, std::string dtype, Device device, int device_id,
              py::object owner, std::function<Status(void*)> sync, bool read_only = true);

  py::tuple dlpack_device() const;
  py::object dlpack(py::object stream, py::object max_version, py::object dl_device, py::object copy);
  py::dict cuda_array_interface() const;

  // A host copy as a NumPy array: one blocking copy ordered after the producer, without the GIL.
  py::array numpy() const;

  py::tuple shape() const;
  std::string dtype() const { return dtype_; }
  int itemsize() const { return dtype_ == "uint8" ? 1 : dtype_ == "float16" ? 2 : 4; }
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
  bool read_only_;
  Status wait_on_host() const;         // sync_(nullptr) with the GIL released
};

// ------------------------------------------------------------------ DLPack consumer

// Reads a DLPack capsule without consuming it: the producer's capsule destructor frees the
// tensor once the caller drops the capsule (which it keeps alive while we read the memory).
py::dict dlpack_tensor_info(py::capsule cap);

}  // namespace arrcoc::pyglue
