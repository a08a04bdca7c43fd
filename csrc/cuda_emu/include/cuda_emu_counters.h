// Counters of the emulated CUDA runtime (tests only, ARRCOC_CUDA=EMULATE): how often host code
// allocates, frees and waits for device work, and how much device memory it holds, so tests can
// prove that a frame costs none of these. Per process, over all devices, since the last reset.
// Exported by the library that holds the emulator; Python reads them with ctypes
// (arrcoc_rt.cuda.emulator_counters), so neither the kernels nor csrc/cuda/ know they exist.
#pragma once

#include <cstddef>

#define ARRCOC_EMU_EXPORT __attribute__((visibility("default")))

extern "C" {
// Writes up to `capacity` (name, value) pairs; returns the number of counters. Names:
//   malloc_calls       cudaMalloc + cudaMallocAsync
//   free_calls         cudaFree + cudaFreeAsync
//   malloc_host_calls  cudaMallocHost
//   free_host_calls    cudaFreeHost
//   host_syncs         every call that blocks the host on device work: the sum of the next six
//   device_syncs       cudaDeviceSynchronize
//   stream_syncs       cudaStreamSynchronize
//   event_syncs        cudaEventSynchronize
//   blocking_copies    cudaMemcpy, and async copies into pageable host memory (they return complete)
//   blocking_memsets   cudaMemset
//   implicit_syncs     cudaFree and cudaFreeHost (they synchronize, as CUDA's do)
//   queries            cudaStreamQuery / cudaEventQuery (no wait on a GPU; the emulator completes
//                      the work there, so they are counted apart from host_syncs)
//   launches           kernel launches (captured ones included: they are launched into the graph)
//   captures           stream captures ended into a graph (cudaStreamEndCapture)
//   graph_launches     cudaGraphLaunch
//   async_copies       copies and memsets queued on a stream without a wait
//   atomics            atomic operations in kernels (atomicAdd, atomicMax, ...): on a GPU, those on
//                      one address serialize, so a kernel should send few of them per frame
//   device_bytes       bytes of live device allocations (as requested)
//   peak_device_bytes  the most device_bytes reached since the reset
ARRCOC_EMU_EXPORT size_t arrcoc_emu_read_counters(const char** names, unsigned long long* values, size_t capacity);
// Zeroes the call counts; peak_device_bytes restarts from the bytes live now.
ARRCOC_EMU_EXPORT void arrcoc_emu_reset_counters(void);
}
