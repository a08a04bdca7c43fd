// What this build of arrcoc can do and what the machine offers, without CUDA headers.
#pragma once

#include <cstddef>
#include <string>

#include "arrcoc/status.h"

namespace arrcoc {

// Version of the library ("0.1.0").
const char* version() noexcept;

// True when the CUDA backend was compiled into this library.
bool built_with_cuda() noexcept;
// True for a test build whose CUDA device is the CPU emulation (ARRCOC_CUDA=EMULATE): the CUDA
// backend's code runs, but on the CPU, with no GPU involved. Never true in a released build.
bool cuda_emulated() noexcept;

// Number of usable CUDA devices. Any CUDA error here (no driver: cudaErrorInsufficientDriver,
// no device, ...) counts as 0 devices. Always 0 when built without CUDA.
int cuda_device_count() noexcept;

// Name of CUDA device `ordinal` ("NVIDIA H100 80GB HBM3"), or "" if there is none.
std::string cuda_device_name(int ordinal) noexcept;

// Blocking copy of `bytes` from CUDA device memory to host memory (ordered after work on the
// legacy default stream; synchronize a builder first if it ran on another stream).
// NotBuiltWithCuda in a CPU-only build.
Status cuda_copy_to_host(void* dst, const void* src, size_t bytes) noexcept;

}  // namespace arrcoc
