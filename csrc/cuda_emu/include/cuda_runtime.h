// The CUDA emulation layer (tests only; ARRCOC_CUDA=EMULATE). With this folder first on the
// include path, csrc/cuda/*.cu compile with the host C++ compiler and run on the CPU: this header
// stands in for CUDA's <cuda_runtime.h> (device-side language + the runtime API csrc/cuda/ uses),
// csrc/cuda_emu/emu_runtime.cpp implements it. The kernels do not know: they are the same files
// nvcc compiles. What it checks and what it cannot prove: docs/TESTING.md.
#pragma once

#include <math.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

// The emulated runtime lives in libarrcoc_core, which hides its symbols (CMakeLists.txt): what this
// header declares is the CUDA API that kernels and host code in other binaries (the C++ tests) call.
#pragma GCC visibility push(default)

// ------------------------------------------------------------------ device-side language
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(...)
// One copy per block: a block's threads are fibers of one OS thread, and an OS thread runs one
// block at a time, so a function-local thread_local is exactly "shared by this block".
#define __shared__ static thread_local

struct uint3 {
  unsigned int x, y, z;
};
struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
};

namespace cuda_emu {
// Indices of the thread the calling fiber runs (set by the block scheduler).
struct ThreadCoords {
  uint3 thread_idx;
  uint3 block_idx;
  dim3 block_dim;
  dim3 grid_dim;
};
extern thread_local const ThreadCoords* tls_coords;
inline const ThreadCoords& coords() noexcept { return *tls_coords; }
// A real barrier over the block's threads (the fiber yields until every live thread arrives).
void syncthreads() noexcept;
// Counts one atomic operation of a kernel (cuda_emu_counters.h, "atomics").
void count_atomic() noexcept;
}  // namespace cuda_emu

#define threadIdx (::cuda_emu::coords().thread_idx)
#define blockIdx (::cuda_emu::coords().block_idx)
#define blockDim (::cuda_emu::coords().block_dim)
#define gridDim (::cuda_emu::coords().grid_dim)

inline void __syncthreads() noexcept { ::cuda_emu::syncthreads(); }
inline void __threadfence() noexcept { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() noexcept { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// CUDA's overloaded min/max for device code.
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned int min(unsigned int a, unsigned int b) { return a < b ? a : b; }
inline unsigned int max(unsigned int a, unsigned int b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }

// Correctly rounded, never-fused float ops (the emulated sources build with -ffp-contract=off).
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }

// Atomics: blocks run concurrently on several OS threads, so these are real atomics.
template <typename T>
inline T emu_atomic_add_int(T* a, T v) {
  ::cuda_emu::count_atomic();
  return __atomic_fetch_add(a, v, __ATOMIC_RELAXED);
}
inline int atomicAdd(int* a, int v) { return emu_atomic_add_int(a, v); }
inline unsigned int atomicAdd(unsigned int* a, unsigned int v) { return emu_atomic_add_int(a, v); }
inline unsigned long long atomicAdd(unsigned long long* a, unsigned long long v) { return emu_atomic_add_int(a, v); }
// Floating-point add as a compare-and-swap loop on the value's bits (Bits: same-size integer).
template <typename F, typename Bits>
inline F emu_atomic_add_float(F* a, F v) {
  static_assert(sizeof(F) == sizeof(Bits), "bits of the same size");
  ::cuda_emu::count_atomic();
  Bits old = __atomic_load_n(reinterpret_cast<Bits*>(a), __ATOMIC_RELAXED), want;
  F f;
  do {
    std::memcpy(&f, &old, sizeof f);
    const F sum = f + v;
    std::memcpy(&want, &sum, sizeof want);
  } while (!__atomic_compare_exchange_n(reinterpret_cast<Bits*>(a), &old, want, true, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED));
  return f;
}
inline float atomicAdd(float* a, float v) { return emu_atomic_add_float<float, uint32_t>(a, v); }
inline double atomicAdd(double* a, double v) { return emu_atomic_add_float<double, uint64_t>(a, v); }
inline int atomicMax(int* a, int v) {
  ::cuda_emu::count_atomic();
  int old = __atomic_load_n(a, __ATOMIC_RELAXED);
  while (old < v && !__atomic_compare_exchange_n(a, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
  return old;
}
inline int atomicMin(int* a, int v) {
  ::cuda_emu::count_atomic();
  int old = __atomic_load_n(a, __ATOMIC_RELAXED);
  while (old > v && !__atomic_compare_exchange_n(a, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
  return old;
}
inline int atomicExch(int* a, int v) {
  ::cuda_emu::count_atomic();
  return __atomic_exchange_n(a, v, __ATOMIC_RELAXED);
}
inline int atomicCAS(int* a, int compare, int v) {
  ::cuda_emu::count_atomic();
  __atomic_compare_exchange_n(a, &compare, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
  return compare;
}

// ------------------------------------------------------------------ runtime API (the subset used)
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInitializationError = 3,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidPitchValue = 12,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorInsufficientDriver = 35,
  cudaErrorInvalidDeviceFunction = 98,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorIllegalState = 401,
  cudaErrorNotReady = 600,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchOutOfResources = 701,
  cudaErrorNotSupported = 801,
  cudaErrorStreamCaptureUnsupported = 900,
  cudaErrorStreamCaptureInvalidated = 901,
  cudaErrorStreamCaptureIsolation = 905,
  cudaErrorStreamCaptureImplicit = 906,
  cudaErrorCapturedEvent = 907,
  cudaErrorStreamCaptureWrongThread = 908,
};
using cudaError = cudaError_t;

typedef struct CUstream_st* cudaStream_t;
typedef struct CUevent_st* cudaEvent_t;
typedef struct CUgraph_st* cudaGraph_t;
typedef struct CUgraphExec_st* cudaGraphExec_t;
enum cudaStreamCaptureMode {
  cudaStreamCaptureModeGlobal = 0,
  cudaStreamCaptureModeThreadLocal = 1,
  cudaStreamCaptureModeRelaxed = 2,
};
enum cudaStreamCaptureStatus {
  cudaStreamCaptureStatusNone = 0,
  cudaStreamCaptureStatusActive = 1,
  cudaStreamCaptureStatusInvalidated = 2,
};
#define cudaStreamLegacy ((cudaStream_t)0x1)
#define cudaStreamPerThread ((cudaStream_t)0x2)
#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01
#define cudaEventDefault 0x00
#define cudaEventBlockingSync 0x01
#define cudaEventDisableTiming 0x02
#define cudaHostAllocDefault 0x00

enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};

enum cudaMemoryType {
  cudaMemoryTypeUnregistered = 0,
  cudaMemoryTypeHost = 1,
  cudaMemoryTypeDevice = 2,
  cudaMemoryTypeManaged = 3,
};

struct cudaPointerAttributes {
  cudaMemoryType type;
  int device;
  void* devicePointer;
  void* hostPointer;
};

enum cudaFuncAttribute {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
};

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  size_t sharedMemPerBlockOptin;
  int regsPerBlock;
  int warpSize;
  int maxThreadsPerBlock;
  int maxThreadsDim[3];
  int maxGridSize[3];
  int multiProcessorCount;
  int major;
  int minor;
};

extern "C" {
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
const char* cudaGetErrorName(cudaError_t error);
const char* cudaGetErrorString(cudaError_t error);

cudaError_t cudaMalloc(void** ptr, size_t size);
cudaError_t cudaFree(void* ptr);
cudaError_t cudaMallocAsync(void** ptr, size_t size, cudaStream_t stream);
cudaError_t cudaFreeAsync(void* ptr, cudaStream_t stream);
cudaError_t cudaMallocHost(void** ptr, size_t size);
cudaError_t cudaFreeHost(void* ptr);
cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* attributes, const void* ptr);
cudaError_t cudaMemset(void* ptr, int value, size_t count);
cudaError_t cudaMemsetAsync(void* ptr, int value, size_t count, cudaStream_t stream);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind, cudaStream_t stream);
cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                              cudaMemcpyKind kind, cudaStream_t stream);

cudaError_t cudaStreamCreate(cudaStream_t* stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaStreamQuery(cudaStream_t stream);
cudaError_t cudaStreamGetDevice(cudaStream_t stream, int* device);
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags);
cudaError_t cudaEventCreate(cudaEvent_t* event);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventQuery(cudaEvent_t event);

// Stream capture and graphs: kernels, memsets and copies between device memory and page-locked
// host memory are captured; the rest of what CUDA can capture (events, nested graphs, memory
// nodes) is refused with cudaErrorNotSupported.
cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph);
cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status);
cudaError_t cudaGraphInstantiateWithFlags(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long flags);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);
}

// ------------------------------------------------------------------ kernel launch
namespace cuda_emu {
// A type-erased kernel call for one thread: runs `kernel(params...)` with the launch's copy of
// the parameters (CUDA copies parameters at launch time, so later host changes do not leak in).
struct KernelCall {
  void* state;
  void (*run)(void* state);
  void (*destroy)(void* state);
};
cudaError_t launch_kernel(const void* kernel, dim3 grid, dim3 block, size_t dynamic_shared, cudaStream_t stream,
                          size_t param_bytes, KernelCall call);
cudaError_t set_max_dynamic_shared(const void* kernel, int bytes);

template <typename... P>
struct BoundKernel {
  void (*kernel)(P...);
  std::tuple<std::decay_t<P>...> params;
  static void run(void* s) {
    auto* b = static_cast<BoundKernel*>(s);
    std::apply(b->kernel, b->params);  // each thread gets its own by-value copy, as on a GPU
  }
  static void destroy(void* s) { delete static_cast<BoundKernel*>(s); }
};

// Bytes of a kernel's parameter list laid out as the CUDA ABI does (each aligned to its type).
template <typename... P>
constexpr size_t param_bytes() {
  size_t off = 0;
  ((off = (off + alignof(std::decay_t<P>) - 1) / alignof(std::decay_t<P>) * alignof(std::decay_t<P>) +
          sizeof(std::decay_t<P>)),
   ...);
  return off;
}

template <typename... P, size_t... I>
BoundKernel<P...>* bind(void (*kernel)(P...), void** args, std::index_sequence<I...>) {
  return new BoundKernel<P...>{kernel, std::tuple<std::decay_t<P>...>(*static_cast<std::decay_t<P>*>(args[I])...)};
}
}  // namespace cuda_emu

// CUDA's C++ launch API (cuda_runtime.h's template overload): `args` points at each parameter.
template <typename... P>
cudaError_t cudaLaunchKernel(void (*kernel)(P...), dim3 grid, dim3 block, void** args, size_t shared_bytes = 0,
                             cudaStream_t stream = nullptr) {
  auto* bound = cuda_emu::bind(kernel, args, std::index_sequence_for<P...>{});
  return cuda_emu::launch_kernel(reinterpret_cast<const void*>(kernel), grid, block, shared_bytes, stream,
                                 cuda_emu::param_bytes<P...>(),
                                 cuda_emu::KernelCall{bound, &cuda_emu::BoundKernel<P...>::run,
                                                      &cuda_emu::BoundKernel<P...>::destroy});
}

template <typename... P>
cudaError_t cudaFuncSetAttribute(void (*kernel)(P...), cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaErrorInvalidValue;
  return cuda_emu::set_max_dynamic_shared(reinterpret_cast<const void*>(kernel), value);
}

#pragma GCC visibility pop
