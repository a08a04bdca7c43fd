// What this build of arrcoc can do and what the machine offers, without CUDA headers.
#pragma once

#include <cstddef>
#include <string>

#include "arrcoc/export.h"
#include "arrcoc/status.h"

namespace arrcoc {

// Version of the library (e.g. "0.2.0").
ARRCOC_API const char* version() noexcept;

// True when the CUDA backend was compiled into this library.
ARRCOC_API bool built_with_cuda() noexcept;
// True for a test build whose CUDA device is the CPU emulation (ARRCOC_CUDA=EMULATE): the CUDA
// backend's code runs, but on the CPU, with no GPU involved. Never true in a released build.
ARRCOC_API bool cuda_emulated() noexcept;

// Number of usable CUDA devices. Any CUDA error here (no driver: cudaErrorInsufficientDriver,
// no device, ...) counts as 0 devices. Always 0 when built without CUDA.
ARRCOC_API int cuda_device_count() noexcept;

// Name of CUDA device `ordinal` ("NVIDIA H100 80GB HBM3"), or "" if there is none.
ARRCOC_API std::string cuda_device_name(int ordinal) noexcept;

// Blocking copy of `bytes` from CUDA device memory to host memory (ordered after work on the
// legacy default stream; synchronize a builder first if it ran on another stream).
// NotBuiltWithCuda in a CPU-only build.
ARRCOC_API Status cuda_copy_to_host(void* dst, const void* src, size_t bytes) noexcept;

// Small CUDA utilities for hosts without CUDA headers (and for Python's arrcoc_rt.cuda). None
// changes the calling thread's current device, except cuda_set_device. All answer
// NotBuiltWithCuda in a CPU-only build; cuda_current_device, which has no Status, answers -1 there
// and wherever no CUDA device is usable.
ARRCOC_API int cuda_current_device() noexcept;
ARRCOC_API Status cuda_set_device(int ordinal) noexcept;
// Device ordinal of CUDA device memory; -1 for host memory (pinned or not).
ARRCOC_API int cuda_pointer_device(const void* ptr) noexcept;
ARRCOC_API Status cuda_malloc(int ordinal, size_t bytes, void** ptr) noexcept;
ARRCOC_API void cuda_free(void* ptr) noexcept;
// Host -> device copy queued on `stream` (nullptr: the legacy default stream of the memory's device).
ARRCOC_API Status cuda_copy_to_device(void* dst, const void* src, size_t bytes, void* stream) noexcept;
ARRCOC_API Status cuda_stream_create(int ordinal, bool non_blocking, void** stream) noexcept;
ARRCOC_API Status cuda_stream_destroy(void* stream) noexcept;
// Waits for `stream`; the legacy (nullptr, 1) and per-thread (2) default streams are those of
// device `ordinal` (-1: the current device).
ARRCOC_API Status cuda_stream_synchronize(void* stream, int ordinal = -1) noexcept;
// Page-locked host memory: uploads from it are truly asynchronous.
ARRCOC_API Status cuda_malloc_host(size_t bytes, void** ptr) noexcept;
ARRCOC_API void cuda_free_host(void* ptr) noexcept;

// CUDA graphs (on by default; ARRCOC_CUDA_GRAPHS=0 in the environment turns them off at start):
// each stage's per-frame kernels are captured once per parameter set and replayed with one graph
// launch (docs/ARCHITECTURE.md). Off, every kernel is launched on its own. Per process.
ARRCOC_API void cuda_set_graphs(bool enabled) noexcept;
ARRCOC_API bool cuda_graphs() noexcept;

}  // namespace arrcoc
