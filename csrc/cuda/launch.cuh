// One way to launch every kernel: launch(kernel, grid, block, shared_bytes, stream)(args...).
// Under nvcc it is exactly `kernel<<<grid, block, shared_bytes, stream>>>(args...)`. Compiled by a
// host compiler (the test-only build against csrc/cuda_emu/), the same call goes through CUDA's
// cudaLaunchKernel, which that runtime implements. Check cudaGetLastError() after it, as after <<<>>>.
#pragma once

#include <cuda_runtime.h>

#include <tuple>
#include <type_traits>
#include <utility>

namespace arrcoc::cuda {

template <typename... P>
struct KernelLaunch {
  void (*kernel)(P...);
  dim3 grid, block;
  size_t shared_bytes;
  cudaStream_t stream;

  template <typename... A>
  void operator()(A&&... args) const {
#if defined(__CUDACC__)
    kernel<<<grid, block, shared_bytes, stream>>>(std::forward<A>(args)...);
#else
    std::tuple<std::decay_t<P>...> values(std::forward<A>(args)...);
    launch_with(values, std::index_sequence_for<P...>{});
#endif
  }

 private:
  template <typename Tuple, size_t... I>
  void launch_with(Tuple& values, std::index_sequence<I...>) const {
    void* pointers[] = {static_cast<void*>(&std::get<I>(values))..., nullptr};
    cudaLaunchKernel(kernel, grid, block, pointers, shared_bytes, stream);  // errors: cudaGetLastError()
  }
};

template <typename... P>
inline KernelLaunch<P...> launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t shared_bytes,
                                 cudaStream_t stream) {
  return KernelLaunch<P...>{kernel, grid, block, shared_bytes, stream};
}

}  // namespace arrcoc::cuda
