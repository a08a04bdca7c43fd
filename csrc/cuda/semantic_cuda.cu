// CUDA backend of the semantic stage: one thread per patch over csrc/shared/semantic_params.h.
#include <cuda_runtime.h>

#include "../core/cuda_backend.h"
#include "../shared/semantic_params.h"
#include "cuda_check.h"
#include "launch.cuh"

namespace arrcoc::cuda {
namespace {

template <typename T>
__global__ void encode_kernel(SemanticParams p) {
  const int q = blockIdx.x * blockDim.x + threadIdx.x;
  if (q < p.w4 * p.h4) encode_patch<T>(p, q);
}

template <typename T>
__global__ void channels_kernel(SemanticParams p) {
  const int q = blockIdx.x * blockDim.x + threadIdx.x;
  if (q < p.w4 * p.h4) semantic_channels_patch<T>(p, q);
}

}  // namespace

Status encode_semantic(const SemanticParams& p, void* stream) noexcept {
  const int blocks = (p.w4 * p.h4 + 127) / 128;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (p.dtype == DType::kFloat16)
    launch(encode_kernel<uint16_t>, blocks, 128, 0, s)(p);
  else
    launch(encode_kernel<float>, blocks, 128, 0, s)(p);
  return check(cudaGetLastError(), "encode_kernel launch");
}

Status write_semantic_channels(const SemanticParams& p, void* stream) noexcept {
  const int blocks = (p.w4 * p.h4 + 127) / 128;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (p.dtype == DType::kFloat16)
    launch(channels_kernel<uint16_t>, blocks, 128, 0, s)(p);
  else
    launch(channels_kernel<float>, blocks, 128, 0, s)(p);
  return check(cudaGetLastError(), "channels_kernel launch");
}

}  // namespace arrcoc::cuda
